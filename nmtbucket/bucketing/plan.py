"""A corpus's bucket plan, measured without training: per key, its batch size and what one epoch
of the sampler puts through it (examples, batches, padded and real tokens), against the two
batchings without keys (random, and sorted by length as fairseq does), and the padding curve
over the number of automatic keys. ``nmtbucket-buckets`` prints it, training draws it, and
``scripts/bench_padding.py`` measures with the same functions."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from nmtbucket.bucketing.buckets import BucketAssignment
from nmtbucket.bucketing.keys import LengthKey, key_lengths
from nmtbucket.bucketing.sampler import BucketBatchSampler
from nmtbucket.bucketing.scheme import BucketScheme, build_bucket_scheme
from nmtbucket.config import BucketingConfig
from nmtbucket.constants import FILLER


def padding_percent(real_tokens: int, padded_tokens: int) -> float:
    """The share of computed (padded) tokens that are padding, in %."""
    return 100.0 * (1 - real_tokens / padded_tokens) if padded_tokens else 0.0


@dataclass(frozen=True)
class KeyLoad:
    """What one epoch puts through one key."""

    key: LengthKey
    batch_size: int
    examples: int
    batches: int
    padded_tokens: int  # rows x the key's lengths, summed over its batches (filler rows too)
    real_tokens: int

    @property
    def padding_percent(self) -> float:
        return padding_percent(self.real_tokens, self.padded_tokens)


@dataclass(frozen=True)
class Batching:
    """One epoch of a batching: its padded and real tokens and how many step shapes it makes."""

    name: str
    padded_tokens: int
    real_tokens: int
    step_shapes: int
    batches: int

    @property
    def padding_percent(self) -> float:
        return padding_percent(self.real_tokens, self.padded_tokens)


@dataclass(frozen=True)
class BucketPlan:
    """The keys of ``config`` on a corpus, their epoch loads, the batchings to compare with and
    the padding curve (number of automatic keys -> padding %, empty when not asked for)."""

    scheme: BucketScheme
    loads: list[KeyLoad]
    total: Batching
    baselines: list[Batching]
    skipped: int  # examples longer than the largest key (bucketing.overlong=skip)
    curve: dict[int, float]

    def table(self) -> str:
        """The plan as Markdown: one row per key, then the totals and the baselines."""
        lines = [
            "| key | batch size | examples | batches | padded tokens | real tokens | padding % |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for load in self.loads:
            lines.append(
                f"| {key_lengths(load.key)} | {load.batch_size} | {load.examples} | "
                f"{load.batches} | {load.padded_tokens} | {load.real_tokens} | "
                f"{load.padding_percent:.2f} |"
            )
        lines += [
            "",
            "| batching | batches | step shapes | padded tokens | real tokens | padding % |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for batching in (self.total, *self.baselines):
            lines.append(
                f"| {batching.name} | {batching.batches} | {batching.step_shapes} | "
                f"{batching.padded_tokens} | {batching.real_tokens} | "
                f"{batching.padding_percent:.2f} |"
            )
        if self.skipped:
            lines.append(f"\n{self.skipped} examples are longer than the largest key (skipped).")
        return "\n".join(lines)


def curve_key_counts(config: BucketingConfig) -> list[int]:
    """The automatic key counts of the padding curve: powers of two up to 64 (or twice
    ``max_keys``), and ``max_keys`` itself."""
    most = max(64, 2 * config.max_keys)
    return sorted({2**i for i in range(most.bit_length()) if 2**i <= most} | {config.max_keys})


def plan_buckets(
    lengths: torch.Tensor, config: BucketingConfig, curve_keys: Sequence[int] = (), seed: int = 1
) -> BucketPlan:
    """The plan of ``config`` for examples of per-stream ``lengths`` (N, d), one epoch of the
    sampler with ``seed``; ``curve_keys`` are the automatic key counts of the padding curve."""
    scheme = build_bucket_scheme(lengths, config)
    loads, assignment = _epoch(lengths, scheme, config, seed)
    total = Batching(
        f"{len(scheme.buckets)} keys ({config.strategy})",
        sum(load.padded_tokens for load in loads),
        sum(load.real_tokens for load in loads),
        len(scheme.buckets),
        sum(load.batches for load in loads),
    )
    kept = assignment.effective_lengths[assignment.bucket_index >= 0]
    curve = {
        keys: measure_keys(lengths, dataclasses.replace(config, strategy="auto", max_keys=keys))
        for keys in curve_keys
    }
    baselines = unbucketed_baselines(kept, config.token_budget)
    return BucketPlan(scheme, loads, total, baselines, assignment.num_skipped, curve)


def measure_keys(lengths: torch.Tensor, config: BucketingConfig) -> float:
    """The padding % of one sampler epoch under ``config``'s keys."""
    loads, _ = _epoch(lengths, build_bucket_scheme(lengths, config), config, seed=0)
    padded = sum(load.padded_tokens for load in loads)
    return padding_percent(sum(load.real_tokens for load in loads), padded)


def _epoch(
    lengths: torch.Tensor, scheme: BucketScheme, config: BucketingConfig, seed: int
) -> tuple[list[KeyLoad], BucketAssignment]:
    """What one epoch of the sampler puts through each key, and the assignment behind it."""
    sampler = BucketBatchSampler(
        lengths,
        scheme.buckets,
        scheme.batch_sizes,
        overlong=config.overlong,  # type: ignore[arg-type]
        seed=seed,
    )
    effective = sampler.assignment.effective_lengths  # (N, d) after truncation
    counts = {key: [0, 0, 0, 0] for key in scheme.buckets}  # examples, batches, padded, real
    for step in sampler:
        real = [i for i in step.example_ids if i != FILLER]
        count = counts[step.bucket_key]
        count[0] += len(real)
        count[1] += 1
        count[2] += len(step.example_ids) * sum(key_lengths(step.bucket_key))
        count[3] += int(effective[real].sum()) if real else 0
    loads = [KeyLoad(key, scheme.batch_sizes[key], *counts[key]) for key in scheme.buckets]
    return loads, sampler.assignment


def unbucketed_baselines(lengths: torch.Tensor, budget: int, seed: int = 0) -> list[Batching]:
    """Random batching (shuffled examples) and sorted batching (by target, then source length,
    as fairseq does), each filled greedily up to ``budget`` padded tokens per batch."""
    shuffled = list(range(len(lengths)))
    random.Random(seed).shuffle(shuffled)
    columns = list(range(lengths.shape[1]))[::-1]
    by_length = sorted(range(len(lengths)), key=lambda i: [int(lengths[i, c]) for c in columns])
    return [
        measure_batches("random", lengths, greedy_batches(lengths, shuffled, budget)),
        measure_batches("sorted", lengths, greedy_batches(lengths, by_length, budget)),
    ]


def greedy_batches(lengths: torch.Tensor, order: Sequence[int], budget: int) -> list[list[int]]:
    """Fill batches in ``order`` while rows x (the longest of each stream, summed) stays within
    ``budget``."""
    batches: list[list[int]] = []
    current: list[int] = []
    widths = torch.zeros(lengths.shape[1], dtype=torch.int64)
    for index in order:
        grown = torch.maximum(widths, lengths[index])
        if current and (len(current) + 1) * int(grown.sum()) > budget:
            batches.append(current)
            current, grown = [], lengths[index].clone()
        current.append(index)
        widths = grown
    if current:
        batches.append(current)
    return batches


def measure_batches(name: str, lengths: torch.Tensor, batches: Iterable[list[int]]) -> Batching:
    """Padded and real tokens of batches each padded to its longest example per stream."""
    padded, shapes, count = 0, set(), 0
    for rows in batches:
        widths = lengths[rows].max(dim=0).values.tolist()
        padded += len(rows) * sum(widths)
        shapes.add((len(rows), *widths))
        count += 1
    return Batching(name, padded, int(lengths.sum()), len(shapes), count)
