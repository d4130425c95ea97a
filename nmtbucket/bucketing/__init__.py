"""The bucketing core: keys, bucket maths, the batch sampler and the BucketingModule (one module
per key from ``sym_gen``, run by an executor from :mod:`nmtbucket.executors`)."""

from nmtbucket.bucketing.auto import define_buckets
from nmtbucket.bucketing.buckets import (
    BucketAssignment,
    assign_buckets,
    define_batch_sizes,
    define_boundaries,
    define_diagonal_buckets,
    define_explicit_buckets,
    define_grid_buckets,
    sort_buckets,
)
from nmtbucket.bucketing.keys import BucketKey, LengthKey, LengthPair, key_lengths
from nmtbucket.bucketing.module import BucketingModule, SymGen
from nmtbucket.bucketing.sampler import BucketBatchSampler, IndexBatch
from nmtbucket.bucketing.scheme import BucketScheme, build_bucket_scheme

__all__ = [
    "BucketAssignment",
    "BucketBatchSampler",
    "BucketKey",
    "BucketScheme",
    "BucketingModule",
    "IndexBatch",
    "LengthKey",
    "LengthPair",
    "SymGen",
    "assign_buckets",
    "build_bucket_scheme",
    "define_batch_sizes",
    "define_boundaries",
    "define_buckets",
    "define_diagonal_buckets",
    "define_explicit_buckets",
    "define_grid_buckets",
    "key_lengths",
    "sort_buckets",
]
