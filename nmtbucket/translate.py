"""CLI `nmtbucket-translate`. Declared now so the console script exists; the command itself
(beam search from a checkpoint folder) is the next piece of work and until then says so and
exits with status 2."""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "nmtbucket-translate is not built yet: this release trains and evaluates models with "
        "nmtbucket-train (greedy decoding); see README, 'Status'.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
