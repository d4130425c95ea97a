"""The pieces of batched beam search, each a small function on tensors: the length penalty, the
initial beams, masking finished hypotheses, top-k over the candidates, finishing and stopping,
and reading the n-best results out at the end."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nmtbucket.constants import PAD_ID
from nmtbucket.errors import NmtBucketError
from nmtbucket.search.limits import trim_outputs

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Hypothesis:
    """One search result: ``tokens`` without the EOS, ``score`` (what ranks hypotheses) is
    ``log_prob / length_penalty(len)``, ``log_prob`` sums the token log-probs, EOS included."""

    tokens: list[int]
    score: float
    log_prob: float


def check_beam_arguments(beam_size: int, nbest: int) -> None:
    """Raise :class:`NmtBucketError` unless ``1 <= nbest <= beam_size``."""
    if beam_size < 1:
        raise NmtBucketError(f"search.beam_size must be at least 1, got {beam_size}")
    if not 1 <= nbest <= beam_size:
        raise NmtBucketError(
            f"nbest must be between 1 and search.beam_size ({beam_size}), got {nbest}; "
            "ask for fewer hypotheses or raise search.beam_size"
        )


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's ``((5 + len) / 6) ** alpha`` as float32, shaped like ``lengths``, which count the
    generated tokens including the EOS; ``alpha = 0`` gives 1 (raw log-probs rank)."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def expand_rows(batch: int, beam_size: int, device: torch.device) -> torch.Tensor:
    """(B*K,) int64 sentence of each decoder row: row ``b*K + k`` is hypothesis k of sentence b."""
    return torch.arange(batch, device=device).repeat_interleave(beam_size)


def initial_scores(max_output_lens: torch.Tensor, beam_size: int) -> torch.Tensor:
    """(B, K) float32 log-probs before step 0: 0 for hypothesis 0 and -inf for the others, so the
    first top-k picks K distinct tokens of hypothesis 0. A row with no room (limit < 1) starts at
    0 everywhere: it starts finished, and each of its results is the empty hypothesis scored 0."""
    batch = max_output_lens.shape[0]
    scores = torch.full((batch, beam_size), NEG_INF, device=max_output_lens.device)
    scores[:, 0] = 0.0
    return scores.masked_fill((max_output_lens < 1)[:, None], 0.0)  # (B, K)


def mask_finished(log_probs: torch.Tensor, finished: torch.Tensor, pad_id: int) -> torch.Tensor:
    """``log_probs`` (B, K, V) where each ``finished`` (B, K) hypothesis has 0 at ``pad_id`` and
    -inf elsewhere: its one continuation is PAD, which keeps its score and length."""
    pad_only = torch.full_like(log_probs[0, 0], NEG_INF)  # (V,)
    pad_only[pad_id] = 0.0
    return torch.where(finished[..., None], pad_only, log_probs)  # (B, K, V)


def top_k_candidates(
    raw_scores: torch.Tensor, log_probs: torch.Tensor, next_lengths: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The K best of the K*V continuations of each sentence by normalized score.

    ``raw_scores`` (B, K) are the hypotheses' log-probs so far, ``log_probs`` (B, K, V) those of
    their next token (finished ones masked), ``next_lengths`` (B, K) their lengths after it.
    Returns, each (B, K) and best first: the beam index each candidate extends, its token, its
    raw log-prob and its normalized score (raw / length_penalty(next length))."""
    batch, beam_size, vocab = log_probs.shape
    raw = raw_scores[..., None] + log_probs  # (B, K, V)
    normalized = raw / length_penalty(next_lengths, alpha)[..., None]  # (B, K, V)
    best, flat = normalized.view(batch, beam_size * vocab).topk(beam_size, dim=1)  # (B, K)
    raw_best = raw.view(batch, beam_size * vocab).gather(1, flat)  # (B, K)
    return flat // vocab, flat % vocab, raw_best, best


def flat_rows(beam_indices: torch.Tensor, hypotheses: int | None = None) -> torch.Tensor:
    """(B*K,) decoder rows to select for back-pointers ``beam_indices`` (B, K) within sentences
    that have ``hypotheses`` rows each (default K)."""
    batch, beam_size = beam_indices.shape
    offsets = torch.arange(batch, device=beam_indices.device) * (hypotheses or beam_size)  # (B,)
    return (offsets[:, None] + beam_indices).view(-1)  # (B*K,)


def update_finished(
    finished: torch.Tensor,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    max_output_lens: torch.Tensor,
    eos_id: int,
) -> torch.Tensor:
    """(B, K) bool: hypotheses already ``finished`` (B, K, after reordering), those whose new
    token (B, K) is EOS, and those whose ``lengths`` (B, K) reached their row's limit (B,)."""
    return finished | (tokens == eos_id) | (lengths >= max_output_lens[:, None])


def rows_done(
    raw_scores: torch.Tensor,
    normalized: torch.Tensor,
    lengths: torch.Tensor,
    finished: torch.Tensor,
    max_output_lens: torch.Tensor,
    nbest: int,
    alpha: float,
) -> torch.Tensor:
    """(B,) bool: sentences whose search is over, given (B, M) scores, lengths and ``finished``
    of their hypotheses (each finished one counted once).

    Over when all K hypotheses are finished, or when the ``nbest``-th best finished normalized
    score is at least the best any active hypothesis could still reach. An active hypothesis of
    raw log-prob r <= 0 and length n ends with raw log-prob r' <= r (log-probs are <= 0) at some
    length l in (n, limit], so its final score is r' / lp(l) <= r / max(lp(n + 1), lp(limit)).
    For alpha >= 0 the penalty grows with length and the bound is r / lp(limit)."""
    finished_scores = normalized.masked_fill(~finished, NEG_INF)  # (B, K)
    nth_finished = finished_scores.topk(nbest, dim=1).values[:, -1]  # (B,)
    largest_penalty = torch.maximum(
        length_penalty(lengths + 1, alpha), length_penalty(max_output_lens, alpha)[:, None]
    )  # (B, K)
    reachable = (raw_scores / largest_penalty).masked_fill(finished, NEG_INF)  # (B, K)
    return finished.all(dim=1) | (nth_finished >= reachable.amax(dim=1))


@dataclass
class FinishedHypotheses:
    """The N best hypotheses that have finished so far, per sentence, best first. Kept apart
    from the beam, so that active continuations that outscore one for a while cannot lose it."""

    raw_scores: torch.Tensor  # (B, N) float32 log-probs, -inf for an empty slot
    normalized: torch.Tensor  # (B, N) raw_scores / length_penalty(lengths), descending
    lengths: torch.Tensor  # (B, N) int64 tokens, EOS included
    history: torch.Tensor  # (B*N, L) int64 tokens, PAD after the hypothesis ends

    def select(self, sentences: torch.Tensor) -> FinishedHypotheses:
        """Those of ``sentences`` ((B',) int64), in that order."""
        batch, nbest = self.lengths.shape
        history = self.history.view(batch, nbest, -1).index_select(0, sentences)
        return FinishedHypotheses(
            raw_scores=self.raw_scores.index_select(0, sentences),
            normalized=self.normalized.index_select(0, sentences),
            lengths=self.lengths.index_select(0, sentences),
            history=history.view(len(sentences) * nbest, -1),
        )

    def best(self, nbest: int, eos_id: int) -> list[list[Hypothesis]]:
        """Per sentence its ``nbest`` hypotheses, best first (see :func:`collect_nbest`)."""
        return collect_nbest(
            self.history.cpu(),
            self.lengths.cpu(),
            self.raw_scores.cpu(),
            self.normalized.cpu(),
            nbest,
            eos_id,
        )


def no_finished_hypotheses(
    max_output_lens: torch.Tensor, nbest: int, max_len: int
) -> FinishedHypotheses:
    """Empty slots for limits ``max_output_lens`` (B,); a row with no room (limit < 1) starts
    with ``nbest`` empty hypotheses scored 0, its whole answer."""
    batch = max_output_lens.shape[0]
    device = max_output_lens.device
    scores = torch.full((batch, nbest), NEG_INF, device=device)
    scores = scores.masked_fill((max_output_lens < 1)[:, None], 0.0)  # (B, N)
    return FinishedHypotheses(
        raw_scores=scores,
        normalized=scores.clone(),
        lengths=torch.zeros((batch, nbest), dtype=torch.long, device=device),
        history=torch.full((batch * nbest, max_len), PAD_ID, device=device),
    )


def keep_finished(
    kept: FinishedHypotheses,
    newly: torch.Tensor,
    raw_scores: torch.Tensor,
    normalized: torch.Tensor,
    lengths: torch.Tensor,
    history: torch.Tensor,
) -> FinishedHypotheses:
    """``kept`` updated with the beam's hypotheses that finished at this step (``newly``, (B, K)
    bool) with their (B, K) scores and lengths and (B*K, L) tokens: the N best of both, best
    first; on a tie the one kept earlier wins."""
    batch, nbest = kept.normalized.shape
    beam_size = newly.shape[1]
    pool = torch.cat([kept.normalized, normalized.masked_fill(~newly, NEG_INF)], dim=1)
    order = pool.sort(dim=1, descending=True, stable=True).indices[:, :nbest]  # (B, N)
    tokens = torch.cat(
        [kept.history.view(batch, nbest, -1), history.view(batch, beam_size, -1)], dim=1
    )  # (B, N+K, L)
    picked = order[:, :, None].expand(-1, -1, tokens.shape[2])  # (B, N, L)
    return FinishedHypotheses(
        raw_scores=torch.cat([kept.raw_scores, raw_scores], dim=1).gather(1, order),
        normalized=pool.gather(1, order),
        lengths=torch.cat([kept.lengths, lengths], dim=1).gather(1, order),
        history=tokens.gather(1, picked).view(batch * nbest, -1),
    )


def collect_nbest(
    history: torch.Tensor,
    lengths: torch.Tensor,
    raw_scores: torch.Tensor,
    normalized: torch.Tensor,
    nbest: int,
    eos_id: int,
) -> list[list[Hypothesis]]:
    """Per sentence, its ``nbest`` hypotheses by ``normalized`` (B, K) score, best first (ties:
    lower beam index first), read from ``history`` (B*K, L) cut to ``lengths`` (B, K) and before
    the EOS. ``raw_scores`` (B, K) become the log-probs."""
    batch, beam_size = normalized.shape
    order = normalized.sort(dim=1, descending=True, stable=True).indices[:, :nbest]  # (B, n)
    offsets = torch.arange(batch, device=order.device) * beam_size  # (B,)
    picked = (offsets[:, None] + order).view(-1)  # (B*n,)
    tokens = trim_outputs(history[picked], lengths.view(-1)[picked], eos_id)
    scores = normalized.view(-1)[picked].tolist()
    log_probs = raw_scores.view(-1)[picked].tolist()
    results = [Hypothesis(*fields) for fields in zip(tokens, scores, log_probs, strict=True)]
    return [results[b * nbest : (b + 1) * nbest] for b in range(batch)]
