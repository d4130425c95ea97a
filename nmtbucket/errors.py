"""The one exception type a user of nmtbucket needs to catch: something they supplied is wrong."""


class NmtBucketError(Exception):
    """A user's mistake (bad config, data or sym_gen); the message says what and how to fix."""


class BucketConfigError(NmtBucketError):
    """Bucket boundaries, batch sizes or a length policy that cannot work."""


class SymGenError(NmtBucketError):
    """A ``sym_gen`` returned a module that does not share the default bucket's parameters."""
