"""What decoding may produce: output length limits, tokens a hypothesis never outputs, and
cutting decoded ids to each row's answer."""

from __future__ import annotations

import torch

from nmtbucket.constants import BOS_ID, PAD_ID
from nmtbucket.errors import NmtBucketError

NEVER_OUTPUT = (PAD_ID, BOS_ID)
"""Ids no hypothesis may produce: they are never training labels, but an undertrained model can
still rank them first, and they would detokenise to nothing."""


def forbid_tokens_(scores: torch.Tensor, token_ids: tuple[int, ...] = NEVER_OUTPUT) -> torch.Tensor:
    """``scores`` (..., V) (logits or log-probs) with -inf at ``token_ids``, written in place:
    a decoding step's scores are large and used once."""
    return scores.index_fill_(-1, torch.tensor(token_ids, device=scores.device), float("-inf"))


def next_token_log_probs_(logits: torch.Tensor) -> torch.Tensor:
    """(R, V) float32 log-probs of each row's next token for decoder ``logits`` (R, V), with
    the tokens no hypothesis may produce at -inf (masked after the softmax, so the other scores
    stay the model's log-probs).

    Float32 logits are overwritten: a step's logits are used once, and a fresh (R, V) buffer
    per step costs more than the softmax itself once it passes malloc's mmap threshold (32 MB:
    about 1000 rows of an 8000-piece vocabulary), as its pages fault in on first touch."""
    scores = logits.float()  # (R, V), ``logits`` itself when already float32
    return forbid_tokens_(torch.log_softmax(scores, dim=-1, out=scores))


def forbid_tokens(scores: torch.Tensor, token_ids: tuple[int, ...] = NEVER_OUTPUT) -> torch.Tensor:
    """:func:`forbid_tokens_` on a copy of ``scores``."""
    return forbid_tokens_(scores.clone(), token_ids)


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
