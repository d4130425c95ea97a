"""Decoding a trained encoder-decoder: output length limits, the greedy step loop, and trimming
the decoded ids to each row's answer. (Beam search will be built from the same pieces.)"""

from __future__ import annotations

from typing import Any

import torch

from nmtbucket.data.tokenizer import BOS_ID, EOS_ID
from nmtbucket.errors import NmtBucketError
from nmtbucket.models.base import Seq2Seq


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


def greedy_steps(
    core: Seq2Seq[Any],
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_output_lens: torch.Tensor,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
) -> torch.Tensor:
    """(B, L) int64 arg-max tokens, L <= ``max_output_lens.max()`` (must be >= 1).

    Stops early once every row has produced EOS or reached its limit; tokens after that point
    in a row are whatever the model said and are cut by :func:`trim_outputs`."""
    max_len = int(max_output_lens.max())
    state = core.init_decoder_state(core.encode(src, src_lengths), max_len)
    prev_tokens = torch.full_like(src_lengths, bos_id)  # (B,)
    finished = torch.zeros_like(src_lengths, dtype=torch.bool)  # (B,)
    outputs = []
    for step in range(max_len):
        logits, state = core.decode_step(state, prev_tokens, step)  # (B, V)
        prev_tokens = logits.argmax(dim=-1)  # (B,)
        outputs.append(prev_tokens)
        finished = finished | (prev_tokens == eos_id) | (max_output_lens <= step + 1)
        if bool(finished.all()):
            break
    return torch.stack(outputs, dim=1)  # (B, L)


def trim_outputs(
    tokens: torch.Tensor, max_output_lens: torch.Tensor, eos_id: int
) -> list[list[int]]:
    """Each row of ``tokens`` (B, L) cut to its limit and before its first EOS."""
    rows = []
    for row, limit in zip(tokens.tolist(), max_output_lens.tolist(), strict=True):
        row = row[:limit]
        rows.append(row[: row.index(eos_id)] if eos_id in row else row)
    return rows


@torch.inference_mode()
def greedy_search(
    core: Seq2Seq[Any],
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_output_lens: torch.Tensor,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
) -> list[list[int]]:
    """Greedy decoding of ``src`` (B, S) with ``src_lengths`` (B,): per row the output ids,
    EOS removed, at most ``max_output_lens[b]`` (B,) tokens counting the EOS. Put ``core`` in
    eval mode first."""
    if src.shape[0] == 0 or int(max_output_lens.max()) < 1:
        return [[] for _ in range(src.shape[0])]
    tokens = greedy_steps(core, src, src_lengths, max_output_lens, bos_id, eos_id)  # (B, L)
    return trim_outputs(tokens.cpu(), max_output_lens.cpu(), eos_id)
