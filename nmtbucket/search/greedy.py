"""Greedy decoding of a trained encoder-decoder: the arg-max step loop and its results."""

from __future__ import annotations

from typing import Any

import torch

from nmtbucket.constants import BOS_ID, EOS_ID
from nmtbucket.models.base import Seq2Seq
from nmtbucket.search.limits import forbid_tokens, trim_outputs


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
        prev_tokens = forbid_tokens(logits).argmax(dim=-1)  # (B,)
        outputs.append(prev_tokens)
        finished = finished | (prev_tokens == eos_id) | (max_output_lens <= step + 1)
        if bool(finished.all()):
            break
    return torch.stack(outputs, dim=1)  # (B, L)


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
