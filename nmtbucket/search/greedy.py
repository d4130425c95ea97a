"""Greedy decoding of a trained encoder-decoder: the arg-max step loop, whose batch shrinks as
rows end, and its results."""

from __future__ import annotations

from typing import Any

import torch

from nmtbucket.constants import BOS_ID, EOS_ID, PAD_ID
from nmtbucket.models.base import StepDecoder
from nmtbucket.search.limits import forbid_tokens_, trim_outputs


def greedy_steps(
    core: StepDecoder[Any],
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_output_lens: torch.Tensor,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
) -> torch.Tensor:
    """(B, L) int64 arg-max tokens, L = ``max_output_lens.max()`` (must be >= 1), PAD after a
    row ends (EOS or its limit).

    A row that ends leaves the batch: the decoder state keeps only the rows still decoding, and
    the loop stops once none is left."""
    max_len = int(max_output_lens.max())
    batch = src.shape[0]
    state = core.init_decoder_state(core.encode(src, src_lengths), max_len)
    outputs = torch.full((batch, max_len), PAD_ID, device=src.device)  # (B, L)
    live = torch.arange(batch, device=src.device)  # (B',) the rows still decoding
    limits = max_output_lens.to(src.device)  # (B',)
    prev_tokens = torch.full_like(live, bos_id)  # (B',)
    for step in range(max_len):
        logits, state = core.decode_step(state, prev_tokens, step)  # (B', V)
        prev_tokens = forbid_tokens_(logits).argmax(dim=-1)  # (B',)
        outputs[live, step] = prev_tokens
        done = (prev_tokens == eos_id) | (limits <= step + 1)  # (B',)
        if bool(done.any()):  # the one host sync per step
            going = (~done).nonzero().view(-1)  # (B'',)
            if len(going) == 0:
                break
            state = core.reorder_state(state, going, going)
            live, limits, prev_tokens = live[going], limits[going], prev_tokens[going]
    return outputs


@torch.inference_mode()
def greedy_search(
    core: StepDecoder[Any],
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
