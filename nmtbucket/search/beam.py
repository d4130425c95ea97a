"""Batched beam search whose batch shrinks: the CPU's search (:mod:`.static_beam` keeps static
shapes for captured CUDA graphs).

- Step 0 runs with one row per sentence; its K best tokens then become the K hypotheses.
- Each step ranks the 2K best continuations of a sentence. Those of the first K that end (EOS
  or the sentence's limit) are finished and kept apart, with the N best finished so far; the K
  best that go on fill the beam, so a finished hypothesis never takes a live slot.
- A sentence is done when its K best hypotheses so far (finished or live, by normalized score)
  are all finished, which is when a beam of K whose finished hypotheses keep their slots would
  stop (at its limit every candidate ends, so then too), or when no live hypothesis can still
  beat its N-th finished one. Done sentences leave the batch: the decoder state keeps
  only the rows of the sentences still searched.
- What depends only on the source (encoder outputs and their attention keys and values) stays
  at one row per sentence and is never copied per hypothesis (see :class:`Seq2Seq`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from nmtbucket.constants import BOS_ID, EOS_ID, PAD_ID
from nmtbucket.models.base import StepDecoder
from nmtbucket.search.beam_pieces import (
    NEG_INF,
    FinishedHypotheses,
    Hypothesis,
    check_beam_arguments,
    flat_rows,
    keep_finished,
    length_penalty,
    no_finished_hypotheses,
    rows_done,
)
from nmtbucket.search.candidates import continuing, top_candidates
from nmtbucket.search.limits import next_token_log_probs_


@dataclass
class LiveBeams:
    """The sentences still searched and their k hypotheses each (1 before step 0, then K), all of
    the same length: the steps taken."""

    sentences: torch.Tensor  # (B',) int64 each live sentence's row in the batch
    limits: torch.Tensor  # (B',) int64 its output limit, EOS included
    raw_scores: torch.Tensor  # (B', k) float32 log-probs so far; -inf: a dead row
    history: torch.Tensor  # (B'*k, L) int64 tokens so far, PAD after them
    kept: FinishedHypotheses  # (B', K) the K best finished so far

    def select(self, live: torch.Tensor) -> LiveBeams:
        """The beams of the sentences ``live`` ((B'',) int64 positions among these), in order."""
        batch, beam = self.raw_scores.shape
        history = self.history.view(batch, beam, -1).index_select(0, live)
        return LiveBeams(
            sentences=self.sentences.index_select(0, live),
            limits=self.limits.index_select(0, live),
            raw_scores=self.raw_scores.index_select(0, live),
            history=history.view(len(live) * beam, -1),
            kept=self.kept.select(live),
        )


def first_beams(
    sentences: torch.Tensor, limits: torch.Tensor, max_len: int, kept: int
) -> LiveBeams:
    """One empty hypothesis scored 0 for each of ``sentences`` (B,) with ``limits`` (B,) >= 1,
    and room for the ``kept`` best finished ones."""
    batch = len(sentences)
    return LiveBeams(
        sentences=sentences,
        limits=limits,
        raw_scores=torch.zeros((batch, 1), device=limits.device),
        history=torch.full((batch, max_len), PAD_ID, device=limits.device),
        kept=no_finished_hypotheses(limits, kept, max_len),
    )


def extend(
    history: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor, step: int
) -> torch.Tensor:
    """(R', L) the histories of ``rows`` (R',) of ``history`` (R, L) with ``tokens`` (R',) at
    ``step``."""
    extended = history.index_select(0, rows)
    extended[:, step] = tokens
    return extended


def advance(
    beams: LiveBeams,
    log_probs: torch.Tensor,
    step: int,
    beam_size: int,
    nbest: int,
    alpha: float,
    eos_id: int,
) -> tuple[LiveBeams, torch.Tensor, torch.Tensor]:
    """One step for next-token ``log_probs`` (B', k, V): the new beams (K hypotheses per
    sentence), the (B'*K,) rows of the current hypotheses they extend (to reorder the decoder
    state by) and (B',) bool sentences that are done."""
    batch, beam, _ = log_probs.shape
    length = step + 1
    candidates = top_candidates(
        beams.raw_scores, log_probs, 2 * beam_size, beams.limits <= length, eos_id
    )  # (B', 2K)
    penalty = float(length_penalty(torch.tensor(length), alpha))
    lengths = torch.full((batch, beam_size), length, device=log_probs.device)  # (B', K)
    first = slice(0, beam_size)
    newly = candidates.ends[:, first]  # (B', K)
    ending_rows = flat_rows(candidates.parents[:, first], beam)
    kept = keep_finished(
        beams.kept,
        newly,
        candidates.raw_scores[:, first],
        candidates.raw_scores[:, first] / penalty,
        lengths,
        extend(beams.history, ending_rows, candidates.tokens[:, first].reshape(-1), step),
    )
    picked, raw_scores = continuing(candidates, beam_size)  # (B', K) each
    rows = flat_rows(candidates.parents.gather(1, picked), beam)  # (B'*K,)
    tokens = candidates.tokens.gather(1, picked).view(-1)  # (B'*K,)
    dead = raw_scores == NEG_INF  # (B', K)
    bound_reached = rows_done(
        torch.cat([kept.raw_scores, raw_scores], dim=1),
        torch.cat([kept.normalized, raw_scores / penalty], dim=1),
        torch.cat([kept.lengths, lengths], dim=1),
        torch.cat([torch.ones_like(kept.lengths, dtype=torch.bool), dead], dim=1),
        beams.limits,
        nbest,
        alpha,
    )  # (B',)
    # The K best hypotheses so far, finished or not, are all finished: what stops a beam of K
    # whose finished hypotheses keep their slots, without them taking live ones. (It holds
    # whenever all of a step's first K candidates end: those are then among the K kept, and
    # every live one scores below them.)
    best_k_finished = kept.normalized[:, -1] >= (raw_scores / penalty).amax(dim=1)  # (B',)
    new_beams = LiveBeams(
        beams.sentences, beams.limits, raw_scores, extend(beams.history, rows, tokens, step), kept
    )
    return new_beams, rows, bound_reached | best_k_finished


@torch.inference_mode()
def beam_search(
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

    ``state_len`` (default ``max(max_output_lens)``, never less) sizes the decoder state: pass
    the same value for every batch of a bucket to keep the shapes of their graphs identical."""
    check_beam_arguments(beam_size, nbest)
    batch = src.shape[0]
    limits = max_output_lens.to(src_lengths.device)  # (B,)
    results = [[Hypothesis([], 0.0, 0.0) for _ in range(nbest)] for _ in range(batch)]
    room = (limits >= 1).nonzero().view(-1)  # (B',) the rows to search
    if len(room) == 0:
        return results
    max_len = int(limits.max())
    encoded = core.encode(src, src_lengths)
    state = core.init_decoder_state(encoded, max(max_len, state_len or 0))
    if len(room) < batch:
        state = core.reorder_state(state, room, room)
    beams = first_beams(room, limits.index_select(0, room), max_len, beam_size)
    prev_tokens = torch.full((len(room),), bos_id, device=limits.device)  # (B',)
    for step in range(max_len):
        logits, state = core.decode_step(state, prev_tokens, step)  # (B'*k, V)
        log_probs = next_token_log_probs_(logits)  # (B'*k, V)
        live_count = len(beams.sentences)
        beams, rows, done = advance(
            beams,
            log_probs.view(live_count, -1, log_probs.shape[-1]),
            step,
            beam_size,
            nbest,
            alpha,
            eos_id,
        )
        if bool(done.any()):  # the one host sync per step
            finished = done.nonzero().view(-1)
            found = beams.kept.select(finished).best(nbest, eos_id)  # the n best of the K
            for sentence, hypotheses in zip(beams.sentences[finished].tolist(), found, strict=True):
                results[sentence] = hypotheses
            live = (~done).nonzero().view(-1)  # (B'',)
            if len(live) == 0:
                break
            rows = rows.view(live_count, beam_size).index_select(0, live).view(-1)
            state = core.reorder_state(state, rows, live)
            beams = beams.select(live)
        elif beam_size > 1:  # at beam 1 each row extends itself: nothing to reorder
            state = core.reorder_state(state, rows)
        prev_tokens = beams.history[:, step]  # (B''*K,)
    return results
