"""Output length limits for decoding, and cutting decoded ids to each row's answer."""

from __future__ import annotations

import torch

from nmtbucket.errors import NmtBucketError


def max_output_lengths(
    src_lengths: torch.Tensor, ratio: float, extra: int, cap: int
) -> torch.Tensor:
    """(B,) int64 output token limits, EOS included: ``min(cap, floor(ratio * src_len) + extra)``,
    at least 1. ``ratio``, ``extra`` and ``cap`` are ``SearchConfig.max_output_ratio``,
    ``max_output_extra`` and ``max_output_len``."""
    if cap < 1 or ratio < 0:
        raise NmtBucketError(
            f"search.max_output_len must be at least 1 and search.max_output_ratio at least 0, "
            f"got {cap} and {ratio}"
        )
    limits = torch.floor(src_lengths.double() * ratio).long() + extra  # (B,)
    return limits.clamp(min=1, max=cap)


def trim_outputs(
    tokens: torch.Tensor, max_output_lens: torch.Tensor, eos_id: int
) -> list[list[int]]:
    """Each row of ``tokens`` (B, L) cut to its limit and before its first EOS."""
    rows = []
    for row, limit in zip(tokens.tolist(), max_output_lens.tolist(), strict=True):
        row = row[:limit]
        rows.append(row[: row.index(eos_id)] if eos_id in row else row)
    return rows
