"""Bucket maths as small pure functions: fixed grids, diagonal lists, explicit lists,
assigning examples to keys under an over-long policy, and batch sizes from a token budget."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from nmtbucket.bucketing.keys import (
    LengthKey,
    LengthPair,
    key_lengths,
    make_length_key,
    tokens_per_row,
)
from nmtbucket.errors import BucketConfigError

OverlongPolicy = Literal["skip", "truncate", "error"]
OVERLONG_POLICIES: tuple[str, ...] = ("skip", "truncate", "error")


def define_boundaries(max_len: int, width: int) -> list[int]:
    """Bucket edges ``width, 2*width, ...`` for one stream, always ending exactly at ``max_len``."""
    if max_len < 1 or width < 1:
        raise BucketConfigError(
            f"max_len ({max_len}) and width ({width}) must both be >= 1; fix the bucketing config"
        )
    edges = list(range(width, max_len, width))
    return [*edges, max_len]


def sort_buckets(buckets: Iterable[LengthKey]) -> list[LengthKey]:
    """Keys in the order the bucket maths relies on: cheapest row first, largest (default) last."""
    return sorted(set(buckets), key=lambda key: (tokens_per_row(key), key_lengths(key)))


def define_grid_buckets(max_lengths: Sequence[int], width: int | Sequence[int]) -> list[LengthKey]:
    """Every combination of per-stream edges of a fixed width: a full 1-D or 2-D grid."""
    widths = [width] * len(max_lengths) if isinstance(width, int) else list(width)
    if len(widths) != len(max_lengths):
        raise BucketConfigError(f"got {len(widths)} widths for {len(max_lengths)} streams")
    edges = [define_boundaries(m, w) for m, w in zip(max_lengths, widths, strict=True)]
    return sort_buckets(make_length_key(combo) for combo in itertools.product(*edges))


def define_diagonal_buckets(
    max_src_len: int, max_tgt_len: int, width: int, length_ratio: float = 1.0
) -> list[LengthKey]:
    """Sockeye-style pairs along the length-ratio diagonal.

    The longer side steps by ``width``, the other by ``width`` scaled by ``length_ratio``
    (target/source). Whichever side runs out of edges first repeats its maximum, so the last
    key is always ``(max_src_len, max_tgt_len)``.
    """
    if length_ratio <= 0:
        raise BucketConfigError(f"length_ratio must be > 0, got {length_ratio}")
    src_step, tgt_step = width, width
    if length_ratio >= 1.0:
        tgt_step = max(1, round(width * length_ratio))
    else:
        src_step = max(1, round(width / length_ratio))
    src_edges = define_boundaries(max_src_len, src_step)
    tgt_edges = define_boundaries(max_tgt_len, tgt_step)
    steps = max(len(src_edges), len(tgt_edges))
    src_edges += [max_src_len] * (steps - len(src_edges))
    tgt_edges += [max_tgt_len] * (steps - len(tgt_edges))
    return sort_buckets(LengthPair(s, t) for s, t in zip(src_edges, tgt_edges, strict=True))


def define_explicit_buckets(keys: Iterable[int | Sequence[int]]) -> list[LengthKey]:
    """Validate a user's list of keys: positive lengths, one arity, and one key covering all."""
    buckets = [make_length_key([k] if isinstance(k, int) else list(k)) for k in keys]
    if not buckets:
        raise BucketConfigError("the explicit bucket list is empty; give at least one key")
    arities = {len(key_lengths(k)) for k in buckets}
    if len(arities) != 1:
        raise BucketConfigError(f"explicit bucket keys mix 1-D and 2-D keys: {buckets}")
    for key in buckets:
        if min(key_lengths(key)) < 1:
            raise BucketConfigError(f"bucket key {key} has a length < 1; lengths must be >= 1")
    ordered = sort_buckets(buckets)
    largest = ordered[-1]
    for key in ordered:
        if any(a > b for a, b in zip(key_lengths(key), key_lengths(largest), strict=True)):
            cover = make_length_key(
                [max(col) for col in zip(*map(key_lengths, ordered), strict=True)]
            )
            raise BucketConfigError(
                f"no explicit bucket covers all others ({key} is not inside {largest}); "
                f"add the largest key {cover} so that every example has a bucket"
            )
    return ordered


def define_batch_sizes(
    buckets: Sequence[LengthKey], token_budget: int, multiple_of: int = 1
) -> dict[LengthKey, int]:
    """Rows per batch for each key so that padded tokens, B x (S + T), stay within the budget.

    With ``multiple_of`` > 1 the size is rounded *down* to a multiple (tensor-core friendly);
    a key whose budget allows fewer rows than ``multiple_of`` keeps its unrounded size, so the
    budget is never exceeded.
    """
    if multiple_of < 1:
        raise BucketConfigError(f"batch size multiple must be >= 1, got {multiple_of}")
    sizes: dict[LengthKey, int] = {}
    for key in buckets:
        rows = token_budget // tokens_per_row(key)
        if rows < 1:
            raise BucketConfigError(
                f"a token budget of {token_budget} cannot hold one row of bucket {key} "
                f"({tokens_per_row(key)} padded tokens); raise the budget or lower the max lengths"
            )
        sizes[key] = rows if rows < multiple_of else rows - rows % multiple_of
    return sizes


@dataclass(frozen=True)
class BucketAssignment:
    """Which bucket each example goes to, and what the over-long policy did."""

    bucket_index: torch.Tensor
    """(N,) index into ``buckets`` for every example; -1 for a skipped one."""
    effective_lengths: torch.Tensor
    """(N, d) lengths after truncation: what each example occupies inside its key."""
    buckets: tuple[LengthKey, ...]
    num_skipped: int
    num_truncated: int
    longest_skipped: tuple[int, ...] | None
    """Per-stream maximum over the skipped examples, for the report."""

    def summary(self) -> str:
        """One line for the log: how many examples were skipped or truncated, and how long."""
        largest = self.buckets[-1]
        parts = [f"{int((self.bucket_index >= 0).sum())} examples in {len(self.buckets)} buckets"]
        if self.num_skipped:
            parts.append(
                f"skipped {self.num_skipped} longer than {largest} "
                f"(longest lengths {self.longest_skipped})"
            )
        if self.num_truncated:
            parts.append(f"truncated {self.num_truncated} to fit {largest}")
        return "; ".join(parts)


def limit_lengths(
    lengths: torch.Tensor, largest: LengthKey, policy: OverlongPolicy
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the over-long policy against the largest key.

    Returns (effective_lengths (N, d), kept (N,) bool). ``error`` raises on the first
    offender, naming it as a 1-based line of the corpus.
    """
    if policy not in OVERLONG_POLICIES:
        raise BucketConfigError(
            f"overlong policy must be one of {OVERLONG_POLICIES}, got {policy!r}"
        )
    limit = torch.tensor(key_lengths(largest), dtype=lengths.dtype)  # (d,)
    overlong = (lengths > limit).any(dim=1)  # (N,)
    if policy == "truncate":
        return torch.minimum(lengths, limit), torch.ones_like(overlong)
    if policy == "error" and bool(overlong.any()):
        first = int(overlong.nonzero()[0])
        raise BucketConfigError(
            f"example on line {first + 1} has lengths {tuple(lengths[first].tolist())}, longer "
            f"than the largest bucket {largest} ({int(overlong.sum())} such examples); raise the "
            "max lengths or set the overlong policy to 'skip' or 'truncate'"
        )
    return lengths, ~overlong


def assign_buckets(
    lengths: torch.Tensor, buckets: Sequence[LengthKey], policy: OverlongPolicy = "skip"
) -> BucketAssignment:
    """Put each example in the cheapest bucket it fits, after applying the over-long policy.

    ``lengths`` is (N, d) with one column per stream; ``buckets`` must be sorted by
    :func:`sort_buckets`, so the last key is the largest and the first fitting key is cheapest.
    """
    buckets = tuple(buckets)
    if list(buckets) != sort_buckets(buckets):
        raise ValueError("buckets must be sorted with sort_buckets() and free of duplicates")
    effective, kept = limit_lengths(lengths, buckets[-1], policy)
    limits = torch.tensor([key_lengths(k) for k in buckets], dtype=lengths.dtype)  # (K, d)
    fits = (effective[:, None, :] <= limits[None, :, :]).all(dim=2)  # (N, K)
    fits &= kept[:, None]
    has_bucket = fits.any(dim=1)  # (N,)
    first_fit = fits.to(torch.int8).argmax(dim=1)  # (N,) first True = cheapest
    bucket_index = torch.where(has_bucket, first_fit, torch.full_like(first_fit, -1))
    skipped = ~kept
    longest = (
        tuple(int(v) for v in lengths[skipped].max(dim=0).values) if bool(skipped.any()) else None
    )
    return BucketAssignment(
        bucket_index=bucket_index,
        effective_lengths=effective,
        buckets=buckets,
        num_skipped=int(skipped.sum()),
        num_truncated=int((effective != lengths).any(dim=1).sum()),
        longest_skipped=longest,
    )


def count_padded_tokens(assignment: BucketAssignment) -> int:
    """Padded tokens if every kept example took exactly one row of its key (no batch effects)."""
    costs = torch.tensor([tokens_per_row(k) for k in assignment.buckets])
    kept = assignment.bucket_index >= 0
    return int(costs[assignment.bucket_index[kept]].sum())
