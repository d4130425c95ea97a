"""From a config and the corpus lengths to the concrete keys and batch sizes of a run, and the
keys of a held-out split (the training keys, plus one for lines longer than all of them)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nmtbucket.bucketing.auto import define_buckets
from nmtbucket.bucketing.buckets import (
    OVERLONG_POLICIES,
    define_batch_sizes,
    define_diagonal_buckets,
    define_explicit_buckets,
    define_grid_buckets,
    limit_lengths,
)
from nmtbucket.bucketing.keys import LengthKey, key_lengths, make_length_key, tokens_per_row
from nmtbucket.config import CHOICES, BucketingConfig
from nmtbucket.errors import BucketConfigError

STRATEGIES = CHOICES["bucketing.strategy"]


@dataclass(frozen=True)
class BucketScheme:
    """The keys of a run, sorted with the largest (default) last, and rows per batch for each."""

    buckets: tuple[LengthKey, ...]
    batch_sizes: dict[LengthKey, int]

    @property
    def default_bucket_key(self) -> LengthKey:
        return self.buckets[-1]


def build_bucket_scheme(lengths: torch.Tensor, config: BucketingConfig) -> BucketScheme:
    """Choose keys for examples with per-stream ``lengths`` (N, d) as ``config`` says.

    The largest key is the per-stream data maximum, capped by ``config.max_lengths``; examples
    beyond it follow ``config.overlong`` when they are assigned.
    """
    if lengths.ndim != 2 or lengths.shape[0] == 0:
        raise BucketConfigError(
            f"need per-stream lengths of at least one example, got shape {tuple(lengths.shape)}; "
            "is the training corpus empty?"
        )
    if config.strategy not in STRATEGIES:
        raise BucketConfigError(
            f"bucketing.strategy must be one of {STRATEGIES}, got {config.strategy!r}"
        )
    if config.overlong not in OVERLONG_POLICIES:
        raise BucketConfigError(
            f"bucketing.overlong must be one of {OVERLONG_POLICIES}, got {config.overlong!r}"
        )
    if config.strategy == "explicit":
        buckets = define_explicit_buckets(config.keys)
        largest = buckets[-1]
    else:
        max_lengths = _max_lengths(lengths, config.max_lengths)
        largest = make_length_key(max_lengths)
    if len(key_lengths(largest)) != lengths.shape[1]:
        raise BucketConfigError(
            f"bucket keys like {largest} need {lengths.shape[1]} lengths each, one per data stream"
        )
    effective, kept = limit_lengths(lengths, largest, config.overlong)  # type: ignore[arg-type]
    if not bool(kept.any()):
        raise BucketConfigError(
            f"every example is longer than the largest bucket {largest} and would be skipped; "
            "raise bucketing.max_lengths or set bucketing.overlong to 'truncate'"
        )
    if config.strategy == "grid":
        buckets = define_grid_buckets(max_lengths, config.width)
    elif config.strategy == "diagonal":
        buckets = _diagonal_buckets(lengths, max_lengths, config)
    elif config.strategy == "auto":
        buckets = define_buckets(effective[kept], config.max_keys)
    sizes = define_batch_sizes(buckets, config.token_budget, config.batch_multiple)
    return BucketScheme(tuple(buckets), sizes)


def _max_lengths(lengths: torch.Tensor, configured: list[int]) -> list[int]:
    data_max = [int(v) for v in lengths.max(dim=0).values]
    if not configured:
        return data_max
    if len(configured) != len(data_max):
        raise BucketConfigError(
            f"bucketing.max_lengths has {len(configured)} values for {len(data_max)} streams"
        )
    return [min(c, d) for c, d in zip(configured, data_max, strict=True)]


def _diagonal_buckets(
    lengths: torch.Tensor, max_lengths: list[int], config: BucketingConfig
) -> list[LengthKey]:
    if len(max_lengths) == 1:
        return define_grid_buckets(max_lengths, config.width)
    ratio = config.length_ratio
    if ratio is None:  # mean target/source ratio of the corpus, as Sockeye estimates it
        ratio = float((lengths[:, 1].double() / lengths[:, 0].double()).mean())
    return define_diagonal_buckets(max_lengths[0], max_lengths[1], config.width, ratio)


def eval_scheme(scheme: BucketScheme, lengths: torch.Tensor, token_budget: int) -> BucketScheme:
    """The training keys, plus one key covering the split's longest lines if they exceed the
    training default key: held-out lines are never skipped or truncated."""
    data_max = tuple(int(v) for v in lengths.max(dim=0).values)
    largest = key_lengths(scheme.default_bucket_key)
    buckets: list[LengthKey] = list(scheme.buckets)
    sizes = define_batch_sizes(buckets, token_budget)
    if any(d > k for d, k in zip(data_max, largest, strict=True)):
        extra = make_length_key([max(d, k) for d, k in zip(data_max, largest, strict=True)])
        buckets.append(extra)
        sizes[extra] = max(1, token_budget // tokens_per_row(extra))  # one row may exceed it
    return BucketScheme(tuple(buckets), sizes)
