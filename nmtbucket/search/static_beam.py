"""Batched beam search with static shapes, the form a captured CUDA graph needs: B sentences x
K hypotheses decoded as B*K rows from start to end, whatever finishes. Finished hypotheses stay
in the beam with frozen scores (Sockeye style) and are also copied to a per-sentence list of
the N best finished ones, which the result is read from, so a finished hypothesis pushed out of
the beam is never lost. Built from :mod:`.beam_pieces`; :mod:`.beam` is the search whose
batch shrinks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nmtbucket.constants import BOS_ID, EOS_ID, PAD_ID
from nmtbucket.models.base import StepDecoder
from nmtbucket.search.beam_pieces import (
    FinishedHypotheses,
    Hypothesis,
    check_beam_arguments,
    expand_rows,
    flat_rows,
    initial_scores,
    keep_finished,
    mask_finished,
    no_finished_hypotheses,
    rows_done,
    top_k_candidates,
    update_finished,
)
from nmtbucket.search.limits import next_token_log_probs_


@dataclass
class Beams:
    """The search state between steps; no tensor changes shape during a search."""

    raw_scores: torch.Tensor  # (B, K) float32 log-probs of the tokens so far
    normalized: torch.Tensor  # (B, K) raw_scores / length_penalty(lengths)
    lengths: torch.Tensor  # (B, K) int64 tokens generated, EOS included
    finished: torch.Tensor  # (B, K) bool: EOS, limit reached, or the sentence is done
    history: torch.Tensor  # (B*K, L) int64 tokens generated, PAD after a hypothesis ends
    kept: FinishedHypotheses  # the N best finished so far, also those that left the beam


def initial_beams(max_output_lens: torch.Tensor, beam_size: int, max_len: int, nbest: int) -> Beams:
    """The beams before step 0 for per-row limits ``max_output_lens`` (B,) and L = ``max_len``."""
    raw_scores = initial_scores(max_output_lens, beam_size)  # (B, K)
    lengths = torch.zeros_like(raw_scores, dtype=torch.long)  # (B, K)
    return Beams(
        raw_scores=raw_scores,
        normalized=raw_scores.clone(),  # 0 or -inf: the same under any length penalty
        lengths=lengths,
        finished=(max_output_lens < 1)[:, None].expand_as(lengths),
        history=torch.full((raw_scores.numel(), max_len), PAD_ID, device=raw_scores.device),
        kept=no_finished_hypotheses(max_output_lens, nbest, max_len),
    )


def advance(
    beams: Beams,
    log_probs: torch.Tensor,
    step: int,
    max_output_lens: torch.Tensor,
    nbest: int,
    alpha: float,
    eos_id: int,
) -> tuple[Beams, torch.Tensor]:
    """The beams after one step whose next-token ``log_probs`` are (B, K, V), and the (B*K,)
    decoder rows the new hypotheses extend (to reorder the decoder state by)."""
    next_lengths = beams.lengths + (~beams.finished).long()  # (B, K)
    log_probs = mask_finished(log_probs, beams.finished, PAD_ID)  # (B, K, V)
    beam_indices, tokens, raw_scores, normalized = top_k_candidates(
        beams.raw_scores, log_probs, next_lengths, alpha
    )  # each (B, K)
    rows = flat_rows(beam_indices)  # (B*K,)
    lengths = next_lengths.gather(1, beam_indices)  # (B, K)
    was_finished = beams.finished.gather(1, beam_indices)  # (B, K)
    finished = update_finished(was_finished, tokens, lengths, max_output_lens, eos_id)
    history = beams.history.index_select(0, rows)  # (B*K, L)
    history[:, step] = tokens.view(-1)
    newly = finished & ~was_finished  # (B, K)
    kept = keep_finished(beams.kept, newly, raw_scores, normalized, lengths, history)
    # Stop rules see each finished hypothesis once (from kept) plus the beam's active ones.
    done = rows_done(
        torch.cat([kept.raw_scores, raw_scores], dim=1),
        torch.cat([kept.normalized, normalized.masked_fill(finished, float("-inf"))], dim=1),
        torch.cat([kept.lengths, lengths], dim=1),
        torch.cat([torch.ones_like(kept.lengths, dtype=torch.bool), finished], dim=1),
        max_output_lens,
        nbest,
        alpha,
    )  # (B,)
    beams = Beams(raw_scores, normalized, lengths, finished | done[:, None], history, kept)
    return beams, rows


@torch.inference_mode()
def static_beam_search(
    core: StepDecoder[Any],
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_output_lens: torch.Tensor,
    beam_size: int,
    alpha: float = 0.0,
    nbest: int = 1,
    state_len: int | None = None,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
) -> list[list[Hypothesis]]:
    """Beam search of ``src`` (B, S) with ``src_lengths`` (B,): per row its ``nbest`` best
    hypotheses, best first, ranked by log-prob / GNMT length penalty with ``alpha``.

    Row b takes at most ``max_output_lens[b]`` (B,) steps; a hypothesis still going at its limit
    ends there without EOS. A row with limit < 1 gives ``nbest`` empty hypotheses scored 0. Put
    ``core`` in eval mode first.

    ``state_len`` (default ``max(max_output_lens)``, never less) sizes the decoder state and
    history: pass the same value for every batch of a bucket to keep their shapes identical."""
    check_beam_arguments(beam_size, nbest)
    batch = src.shape[0]
    if batch == 0:
        return []
    limits = max_output_lens.to(src_lengths.device)  # (B,)
    max_len = max(int(limits.max()), state_len or 0)
    if int(limits.max()) < 1:
        return [[Hypothesis([], 0.0, 0.0) for _ in range(nbest)] for _ in range(batch)]
    state = core.init_decoder_state(core.encode(src, src_lengths), max_len, static=True)
    state = core.reorder_state(state, expand_rows(batch, beam_size, src_lengths.device))
    beams = initial_beams(limits, beam_size, max_len, nbest)
    prev_tokens = torch.full((batch * beam_size,), bos_id, device=src_lengths.device)  # (B*K,)
    for step in range(max_len):
        logits, state = core.decode_step(state, prev_tokens, step)  # (B*K, V)
        log_probs = next_token_log_probs_(logits)  # (B*K, V)
        log_probs = log_probs.view(batch, beam_size, -1)  # (B, K, V)
        beams, rows = advance(beams, log_probs, step, limits, nbest, alpha, eos_id)
        state = core.reorder_state(state, rows)
        prev_tokens = beams.history[:, step]  # (B*K,)
        if bool(beams.finished.all()):  # the one host sync per step
            break
    return beams.kept.best(nbest, eos_id)
