"""The bucket batch sampler: groups examples by key, shuffles within buckets, and draws the next
bucket at random weighted by how many batches each still holds. Deterministic for (seed, epoch),
resumable mid-epoch, and shardable over ranks that all take the same key at the same step.

Partial batches. Sorting buckets cheapest first, the examples left over after a bucket's full
batches move on to the cheapest *later* bucket they fit, and join its batches. Only the largest
(default) bucket, which fits everything, can end with a partial batch; it is filled up with empty
rows (example id -1, length 0). So no example is dropped or repeated and no extra step shape is
created; the cost is a little padding: leftovers padded to a larger key, and at most one batch of
empty rows per epoch (see the padding benchmark in the README for measured numbers).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nmtbucket.bucketing.buckets import BucketAssignment, OverlongPolicy, assign_buckets
from nmtbucket.bucketing.keys import LengthKey, key_lengths
from nmtbucket.constants import FILLER
from nmtbucket.errors import NmtBucketError


@dataclass(frozen=True)
class IndexBatch:
    """One rank's rows of one step: the key and dataset indices (``FILLER`` for an empty row)."""

    bucket_key: LengthKey
    example_ids: tuple[int, ...]


def check_same_layout(
    what: str,
    saved: Mapping[str, Any],
    mine: Mapping[str, Any],
    fields: Sequence[str],
    how_to_fix: str,
) -> None:
    """Refuse to resume batches from a ``saved`` state whose ``fields`` (the data and batch
    layout) differ from ``mine``: the position it holds would point at other batches."""
    for field in fields:
        if saved[field] != mine[field]:
            raise NmtBucketError(
                f"{what} state does not match this data: {field} was {saved[field]!r}, "
                f"now {mine[field]!r}; {how_to_fix}"
            )


class BucketBatchSampler:
    """Yields :class:`IndexBatch` es for one rank, one epoch after another.

    ``lengths`` (N, d) are the per-stream lengths of every example; ``buckets`` are sorted keys
    (largest last) and ``batch_sizes`` the rows per rank for each key. With ``shuffle=False`` the
    order is fixed: buckets in order, examples in corpus order (for validation).
    """

    def __init__(
        self,
        lengths: torch.Tensor,
        buckets: Sequence[LengthKey],
        batch_sizes: Mapping[LengthKey, int],
        *,
        overlong: OverlongPolicy = "skip",
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise NmtBucketError(f"rank must be in [0, {world_size}), got {rank}")
        missing = [k for k in buckets if k not in batch_sizes]
        if missing:
            raise NmtBucketError(f"no batch size for bucket keys {missing}")
        self.assignment: BucketAssignment = assign_buckets(lengths, buckets, overlong)
        self.buckets: tuple[LengthKey, ...] = self.assignment.buckets
        self.batch_sizes = {k: int(batch_sizes[k]) for k in self.buckets}
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0  # batches of the current epoch already yielded
        self._plan_cache: tuple[int, list[tuple[int, list[int]]]] | None = None

    @property
    def default_bucket_key(self) -> LengthKey:
        """The largest key: every example fits in it, so it is built first."""
        return self.buckets[-1]

    @property
    def step_shapes(self) -> dict[LengthKey, tuple[int, ...]]:
        """The static shape ``(B, S[, T])`` this sampler's batches take for each key."""
        return {k: (self.batch_sizes[k], *key_lengths(k)) for k in self.buckets}

    @property
    def num_examples(self) -> int:
        """Examples seen per epoch (all but the skipped ones)."""
        return int((self.assignment.bucket_index >= 0).sum())

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.epoch = epoch
        self.position = 0

    def __len__(self) -> int:
        """Steps in one epoch (the same on every rank)."""
        return len(self._plan(self.epoch))

    def __iter__(self) -> Iterator[IndexBatch]:
        """The rest of the current epoch; when it is exhausted the sampler moves to the next."""
        plan = self._plan(self.epoch)
        while self.position < len(plan):
            bucket, rows = plan[self.position]
            self.position += 1
            yield self._step(bucket, rows)
        self.set_epoch(self.epoch + 1)

    def example_steps(self) -> list[IndexBatch]:
        """The first step of every key that has one this epoch, the largest key first: to
        capture or compile each key's step before training. The position does not move."""
        first: dict[int, list[int]] = {}
        for bucket, rows in self._plan(self.epoch):
            first.setdefault(bucket, rows)
        return [self._step(bucket, first[bucket]) for bucket in sorted(first, reverse=True)]

    def _step(self, bucket: int, rows: list[int]) -> IndexBatch:
        """This rank's share of a global step's ``rows``."""
        key = self.buckets[bucket]
        size = self.batch_sizes[key]
        return IndexBatch(key, tuple(rows[self.rank * size : (self.rank + 1) * size]))

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_examples": self.num_examples,
            "buckets": [list(key_lengths(k)) for k in self.buckets],
            "batch_sizes": [self.batch_sizes[k] for k in self.buckets],
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume where ``state`` was taken; refuses a state from different data or buckets."""
        check_same_layout(
            "sampler",
            state,
            self.state_dict(),
            ("seed", "num_examples", "buckets", "batch_sizes", "world_size"),
            "resume with the same data, buckets, seed and number of training processes "
            "(torchrun ranks: each takes its share of every step, so another count changes the "
            "batches)",
        )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])

    def _plan(self, epoch: int) -> list[tuple[int, list[int]]]:
        """Every global step of ``epoch``: (bucket index, world_size x B rows)."""
        if self._plan_cache is None or self._plan_cache[0] != epoch:
            self._plan_cache = (epoch, self._make_plan(epoch))
        return self._plan_cache[1]

    def _make_plan(self, epoch: int) -> list[tuple[int, list[int]]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        per_bucket = self._fill_buckets(rng)
        if not self.shuffle:
            return [(b, rows) for b, batches in enumerate(per_bucket) for rows in batches]
        remaining = [len(batches) for batches in per_bucket]
        taken = [0] * len(per_bucket)
        plan = []
        for _ in range(sum(remaining)):
            bucket = rng.choices(range(len(remaining)), weights=remaining)[0]
            plan.append((bucket, per_bucket[bucket][taken[bucket]]))
            taken[bucket] += 1
            remaining[bucket] -= 1
        return plan

    def _fill_buckets(self, rng: random.Random) -> list[list[list[int]]]:
        """Global batches of every bucket, leftovers moved to the next bucket that fits them."""
        index = self.assignment.bucket_index
        lengths = self.assignment.effective_lengths
        limits = torch.tensor([key_lengths(k) for k in self.buckets])  # (K, d)
        pools: list[list[int]] = [
            (index == b).nonzero().flatten().tolist() for b in range(len(limits))
        ]
        batches: list[list[list[int]]] = []
        for bucket, key in enumerate(self.buckets):
            pool = pools[bucket]
            if self.shuffle:
                rng.shuffle(pool)
            size = self.batch_sizes[key] * self.world_size
            full = len(pool) - len(pool) % size
            batches.append([pool[i : i + size] for i in range(0, full, size)])
            leftovers = pool[full:]
            if not leftovers:
                continue
            if bucket == len(self.buckets) - 1:
                batches[bucket].append(leftovers + [FILLER] * (size - len(leftovers)))
                continue
            later = limits[bucket + 1 :]  # (K', d)
            fits = (lengths[leftovers][:, None, :] <= later[None, :, :]).all(dim=2)  # (n, K')
            targets = bucket + 1 + fits.to(torch.int8).argmax(dim=1)
            for example, target in zip(leftovers, targets.tolist(), strict=True):
                pools[target].append(example)
        return batches
