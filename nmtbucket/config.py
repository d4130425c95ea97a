"""Typed configuration schemas. The CLIs turn Hydra configs into these once; library code below
them only ever sees these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BucketingConfig:
    """How bucket keys and batch sizes are chosen.

    ``strategy``: ``auto`` (minimise padding with at most ``max_keys`` keys), ``grid`` (every
    combination of per-stream edges ``width`` apart), ``diagonal`` (Sockeye-style pairs along
    the target/source length ratio) or ``explicit`` (the ``keys`` listed).
    """

    strategy: str = "auto"
    max_keys: int = 32
    width: int = 8
    length_ratio: float | None = None  # diagonal only; None: the corpus mean tgt/src ratio
    keys: list[list[int]] = field(default_factory=list)  # explicit only
    max_lengths: list[int] = field(default_factory=list)  # per stream; empty: the data maximum
    overlong: str = "skip"  # skip | truncate | error, for examples longer than the largest key
    token_budget: int = 4096  # padded tokens per batch and rank: B x (S + T) <= budget
    batch_multiple: int = 1  # round batch sizes down to a multiple of this (8 for tensor cores)
