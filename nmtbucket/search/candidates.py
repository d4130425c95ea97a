"""One step of the beam search whose batch shrinks: the 2K best continuations of each sentence,
which of them end, and the K best that go on. Every live hypothesis of a sentence has the same
length, so ranking by log-probability is ranking by normalized score."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nmtbucket.search.beam_pieces import NEG_INF


@dataclass
class Candidates:
    """A step's best continuations of each sentence, best first; ``width`` per sentence."""

    parents: torch.Tensor  # (B, C) int64 the hypothesis (0 .. k-1) each one extends
    tokens: torch.Tensor  # (B, C) int64 its token
    raw_scores: torch.Tensor  # (B, C) float32 log-probs with the token; -inf: not a candidate
    ends: torch.Tensor  # (B, C) bool: a candidate whose token is EOS or that reached the limit

    @property
    def valid(self) -> torch.Tensor:
        """(B, C) bool: a real candidate (finite log-prob: no forbidden token, no filler)."""
        return self.raw_scores > NEG_INF


def top_candidates(
    raw_scores: torch.Tensor,
    log_probs: torch.Tensor,
    width: int,
    at_limit: torch.Tensor,
    eos_id: int,
) -> Candidates:
    """The ``width`` best of the k x V continuations of each sentence's k hypotheses.

    ``raw_scores`` (B, k) are the hypotheses' log-probs so far, ``log_probs`` (B, k, V) those of
    their next token, overwritten with the continuations' log-probs (one (B, k, V) buffer less
    per step, see :func:`~nmtbucket.search.limits.next_token_log_probs_`); ``at_limit`` (B,) bool
    marks sentences whose next token is their last.
    Where k x V < ``width``, the missing candidates are fillers with score -inf."""
    batch, beam, vocab = log_probs.shape
    raw = log_probs.add_(raw_scores[..., None]).view(batch, beam * vocab)  # (B, k*V)
    best, flat = raw.topk(min(width, beam * vocab), dim=1)  # (B, C') each, best first
    missing = width - best.shape[1]
    best = F.pad(best, (0, missing), value=NEG_INF)  # (B, C)
    flat = F.pad(flat, (0, missing))  # (B, C)
    tokens = flat % vocab
    ends = (best > NEG_INF) & ((tokens == eos_id) | at_limit[:, None])
    return Candidates(flat // vocab, tokens, best, ends)


def continuing(candidates: Candidates, beam_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``beam_size`` best candidates of each sentence that go on: (B, K) positions among
    the candidates, best first, and their (B, K) log-probs. Where fewer than K go on, the rest
    are filled with other candidates scored -inf (dead rows that no later step extends)."""
    width = candidates.raw_scores.shape[1]
    positions = torch.arange(width, device=candidates.tokens.device)  # (C,)
    goes_on = candidates.valid & ~candidates.ends  # (B, C)
    rank = torch.where(goes_on, positions, positions + width)  # those going on first, in order
    picked = rank.argsort(dim=1)[:, :beam_size]  # (B, K)
    raw = candidates.raw_scores.gather(1, picked)
    return picked, raw.masked_fill(~goes_on.gather(1, picked), NEG_INF)
