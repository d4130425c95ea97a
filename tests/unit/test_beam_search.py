"""Beam search: each piece on small tables, then the whole search on a scripted decoder whose
beams are worked out by hand, and on tiny real models (beam 1 = greedy, batch = one at a time,
a beam wide enough for every sequence = exhaustive search)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from nmtbucket.config import ModelConfig
from nmtbucket.constants import BOS_ID, EOS_ID, PAD_ID
from nmtbucket.errors import NmtBucketError
from nmtbucket.models import build_seq2seq
from nmtbucket.models.base import EncoderState, KeyBuffers, Seq2Seq, source_mask
from nmtbucket.search import Hypothesis, beam_search, greedy_search, length_penalty
from nmtbucket.search.beam_pieces import (
    check_beam_arguments,
    collect_nbest,
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
from nmtbucket.search.limits import NEVER_OUTPUT
from nmtbucket.search.static_beam import Beams, advance
from tests.unit.test_search import CopyCore

VOCAB = 10
INF = float("inf")
log = math.log

# ---------------------------------------------------------------------------------------------
# The pieces


@pytest.mark.parametrize(
    ("lengths", "alpha", "expected"),
    [
        ([0, 1, 7], 0.0, [1.0, 1.0, 1.0]),
        ([1, 7, 13], 1.0, [1.0, 2.0, 3.0]),
        ([19], 0.5, [2.0]),
        ([1, 4], 2.0, [1.0, 2.25]),
    ],
)
def test_length_penalty(lengths, alpha, expected) -> None:
    got = length_penalty(torch.tensor(lengths), alpha)
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("batch", "beam_size", "expected"),
    [(3, 2, [0, 0, 1, 1, 2, 2]), (2, 1, [0, 1]), (1, 3, [0, 0, 0]), (0, 3, [])],
)
def test_expand_rows(batch, beam_size, expected) -> None:
    assert expand_rows(batch, beam_size, torch.device("cpu")).tolist() == expected


def test_initial_scores_leave_one_live_hypothesis_unless_a_row_has_no_room() -> None:
    got = initial_scores(torch.tensor([3, 0, 1]), 3)
    assert got.tolist() == [[0.0, -INF, -INF], [0.0, 0.0, 0.0], [0.0, -INF, -INF]]


def test_mask_finished_leaves_only_pad() -> None:
    log_probs = -torch.arange(1.0, 7.0).view(1, 2, 3)  # (1, 2, 3)
    got = mask_finished(log_probs, torch.tensor([[False, True]]), pad_id=0)
    assert got.tolist() == [[[-1.0, -2.0, -3.0], [0.0, -INF, -INF]]]


@pytest.mark.parametrize(
    ("alpha", "beams", "tokens", "raw", "normalized"),
    [
        # hypothesis 1 is finished (its only continuation, PAD, keeps -1.25 at length 1)
        (0.0, [0, 1], [0, 0], [-1.1, -1.25], [-1.1, -1.25]),
        # alpha 1 divides hypothesis 0's continuations (length 2) by 7/6: both of them win
        (1.0, [0, 0], [0, 1], [-1.1, -1.3], [-1.1 * 6 / 7, -1.3 * 6 / 7]),
    ],
)
def test_top_k_candidates(alpha, beams, tokens, raw, normalized) -> None:
    raw_scores = torch.tensor([[-1.0, -1.25]])  # (1, 2)
    log_probs = torch.tensor([[[-0.1, -0.3, -3.0], [0.0, -INF, -INF]]])  # (1, 2, 3)
    next_lengths = torch.tensor([[2, 1]])
    got = top_k_candidates(raw_scores, log_probs, next_lengths, alpha)
    assert got[0].tolist() == [beams]
    assert got[1].tolist() == [tokens]
    assert got[2].tolist() == [pytest.approx(raw)]
    assert got[3].tolist() == [pytest.approx(normalized)]


@pytest.mark.parametrize(
    ("beam_indices", "expected"),
    [([[1, 0], [1, 1]], [1, 0, 3, 3]), ([[0], [0], [0]], [0, 1, 2]), ([[2, 2, 0]], [2, 2, 0])],
)
def test_flat_rows(beam_indices, expected) -> None:
    assert flat_rows(torch.tensor(beam_indices)).tolist() == expected


def test_update_finished_by_eos_or_limit() -> None:
    got = update_finished(
        finished=torch.tensor([[False, True, False, False], [False, False, False, False]]),
        tokens=torch.tensor([[EOS_ID, 4, 5, 6], [4, 4, 4, EOS_ID]]),
        lengths=torch.tensor([[2, 5, 3, 2], [2, 3, 4, 1]]),
        max_output_lens=torch.tensor([3, 4]),
        eos_id=EOS_ID,
    )
    assert got.tolist() == [[True, True, True, False], [False, False, True, True]]


@pytest.mark.parametrize(
    ("finished", "raw", "lengths", "limit", "nbest", "alpha", "expected"),
    [
        ([True, True], [-1.0, -3.0], [2, 4], 4, 1, 0.0, True),  # all finished
        ([True, False], [-1.0, -1.5], [2, 1], 4, 1, 0.0, True),  # -1.5 can only fall
        ([True, False], [-1.0, -0.8], [2, 1], 4, 1, 0.0, False),
        ([True, False], [-1.0, -1.5], [1, 1], 3, 1, 1.0, True),  # at best -1.5 / (8/6)
        ([True, False], [-1.0, -1.5], [1, 1], 10, 1, 1.0, False),  # could reach -1.5 / 2.5
        ([True, False], [-1.0, -9.0], [1, 1], 4, 2, 0.0, False),  # only one finished
        ([True, False], [-1.0, -0.9], [1, 1], 10, 1, -1.0, True),  # at best -0.9 * 7 / 6
        ([True, False], [-1.0, -0.8], [1, 1], 10, 1, -1.0, False),  # could reach -0.8 * 7 / 6
    ],
)
def test_rows_done(finished, raw, lengths, limit, nbest, alpha, expected) -> None:
    raw_scores = torch.tensor([raw])  # (1, 2)
    lengths_t = torch.tensor([lengths])
    normalized = raw_scores / length_penalty(lengths_t, alpha)
    finished_t, limits = torch.tensor([finished]), torch.tensor([limit])
    done = rows_done(raw_scores, normalized, lengths_t, finished_t, limits, nbest, alpha)
    assert done.tolist() == [expected]


def test_collect_nbest_ranks_cuts_and_breaks_ties_by_beam_index() -> None:
    history = torch.tensor(
        [
            [4, 5, EOS_ID, PAD_ID],
            [6, EOS_ID, PAD_ID, PAD_ID],
            [7, 7, 7, 7],  # stopped at its limit: no EOS
            [4, 4, PAD_ID, PAD_ID],  # frozen by an early stop: no EOS
            [8, EOS_ID, PAD_ID, PAD_ID],
            [9, EOS_ID, PAD_ID, PAD_ID],
        ]
    )  # (B*K, L) with B = 2, K = 3
    lengths = torch.tensor([[3, 2, 4], [2, 2, 2]])
    raw = torch.tensor([[-1.5, -0.625, -2.0], [-2.5, -3.5, -4.5]])
    normalized = torch.tensor([[-1.0, -0.5, -1.0], [-2.0, -3.0, -4.0]])
    got = collect_nbest(history, lengths, raw, normalized, nbest=2, eos_id=EOS_ID)
    assert got == [
        [Hypothesis([6], -0.5, -0.625), Hypothesis([4, 5], -1.0, -1.5)],
        [Hypothesis([4, 4], -2.0, -2.5), Hypothesis([8], -3.0, -3.5)],
    ]


def test_advance_reorders_history_by_back_pointers() -> None:
    beams = Beams(
        raw_scores=torch.tensor([[-1.0, -1.2]]),
        normalized=torch.tensor([[-1.0, -1.2]]),
        lengths=torch.tensor([[1, 1]]),
        finished=torch.tensor([[False, False]]),
        history=torch.tensor([[5, PAD_ID, PAD_ID], [4, PAD_ID, PAD_ID]]),
        kept=no_finished_hypotheses(torch.tensor([5]), nbest=1, max_len=3),
    )
    log_probs = torch.full((1, 2, 6), -9.0)
    log_probs[0, 0, 5] = -2.0
    log_probs[0, 1, 4] = -0.1
    log_probs[0, 1, EOS_ID] = -0.2
    beams, rows = advance(beams, log_probs, 1, torch.tensor([5]), nbest=1, alpha=0.0, eos_id=EOS_ID)
    assert rows.tolist() == [1, 1]  # both survivors extend hypothesis 1
    assert beams.history.tolist() == [[4, 4, PAD_ID], [4, EOS_ID, PAD_ID]]
    assert beams.raw_scores.tolist() == [pytest.approx([-1.3, -1.4])]
    assert beams.lengths.tolist() == [[2, 2]]
    assert beams.finished.tolist() == [[False, True]]  # -1.3 may still fall below -1.4
    assert beams.kept.history.tolist() == [[4, EOS_ID, PAD_ID]]  # the one that finished
    assert beams.kept.raw_scores.tolist() == [pytest.approx([-1.4])]


def test_keep_finished_keeps_the_n_best_ever_finished() -> None:
    kept = no_finished_hypotheses(torch.tensor([4, 0]), nbest=2, max_len=2)
    assert kept.normalized.tolist() == [[-INF, -INF], [0.0, 0.0]]  # no room: empty answers
    history = torch.tensor([[4, EOS_ID], [5, 6], [7, EOS_ID], [8, EOS_ID]])  # (B*K, L), K = 2
    scores = torch.tensor([[-1.0, -0.5], [-2.0, -3.0]])
    newly = torch.tensor([[True, False], [True, True]])
    lengths = torch.tensor([[2, 2], [2, 2]])
    kept = keep_finished(kept, newly, scores * 2, scores, lengths, history)
    assert kept.normalized.tolist() == [[-1.0, -INF], [0.0, 0.0]]  # 5 6 is still going
    assert kept.history.tolist()[:2] == [[4, EOS_ID], [PAD_ID, PAD_ID]]
    later = torch.tensor([[9, EOS_ID], [4, EOS_ID], [7, EOS_ID], [8, EOS_ID]])
    kept = keep_finished(
        kept,
        torch.tensor([[True, True], [False, False]]),
        scores * 2,
        torch.tensor([[-0.2, -1.0], [-9.0, -9.0]]),
        lengths,
        later,
    )
    assert kept.normalized.tolist() == [pytest.approx([-0.2, -1.0]), [0.0, 0.0]]  # kept first
    assert kept.history.tolist()[:2] == [[9, EOS_ID], [4, EOS_ID]]
    assert kept.raw_scores.tolist()[0] == [-2.0, -2.0]


@pytest.mark.parametrize(("beam_size", "nbest", "match"), [(0, 1, "beam_size"), (2, 3, "nbest")])
def test_rejects_bad_beam_arguments(beam_size, nbest, match) -> None:
    with pytest.raises(NmtBucketError, match=match):
        check_beam_arguments(beam_size, nbest)
    src = torch.tensor([[1]])
    with pytest.raises(NmtBucketError, match=match):
        beam_search(
            ScriptedCore(), src, torch.tensor([1]), torch.tensor([3]), beam_size, nbest=nbest
        )


# ---------------------------------------------------------------------------------------------
# The whole search on a scripted decoder

Table = dict[tuple[int, tuple[int, ...]], dict[int, float]]

TABLE: Table = {
    # sentence 0: greedy takes 4 then 6 (0.5 * 0.4 * 0.9 = 0.18); beam finds 5 EOS (0.4 * 0.9)
    (0, ()): {4: 0.5, 5: 0.4},
    (0, (4,)): {6: 0.4, 7: 0.3, EOS_ID: 0.2},
    # sentence 1: 5 EOS (0.27) finishes at step 1 and waits while 4 6 7 EOS (0.4374) goes on
    (1, ()): {4: 0.6, 5: 0.3},
    (1, (4,)): {6: 0.9},
    (1, (4, 6)): {7: 0.9},
    # sentence 2: 6 EOS (0.36) beats 6 4 5 EOS (0.3168) at alpha 0 but not at alpha 1
    (2, ()): {6: 0.9},
    (2, (6,)): {4: 0.55, EOS_ID: 0.4},
    (2, (6, 4)): {5: 0.8},
    (2, (6, 4, 5)): {EOS_ID: 0.8},
    # sentence 3: three clear first tokens, each then ending
    (3, ()): {4: 0.5, 5: 0.3, 6: 0.15},
}
DEFAULT = {EOS_ID: 0.9}  # any prefix not in the table most likely ends


@dataclass
class PrefixState:
    sentence: torch.Tensor  # (N,) int64 the table's sentence key of each row
    prefix: torch.Tensor  # (N, L) int64 tokens fed after BOS, PAD after them


class ScriptedCore(Seq2Seq[PrefixState]):
    """Next-token probabilities ``TABLE[(sentence, prefix)]`` (else ``DEFAULT``), the rest of the
    mass spread evenly over the other tokens; the sentence key is the source's first token."""

    def __init__(self, table: Table = TABLE) -> None:
        super().__init__(VOCAB, VOCAB, d_model=1)
        self.table = table
        self.calls = 0

    def encode(
        self, src: torch.Tensor, src_lengths: torch.Tensor, buffers: KeyBuffers | None = None
    ) -> EncoderState:
        return EncoderState(src[..., None].float(), source_mask(src_lengths, src.shape[1]))

    def decode(
        self, tgt_in: torch.Tensor, encoder_state: EncoderState, buffers: KeyBuffers | None = None
    ) -> torch.Tensor:
        raise NotImplementedError("search only steps")

    def init_decoder_state(
        self, encoder_state: EncoderState, max_output_len: int, static: bool = False
    ) -> PrefixState:
        batch = encoder_state.memory.shape[0]
        prefix = torch.full((batch, max_output_len), PAD_ID)
        return PrefixState(encoder_state.memory[:, 0, 0].long(), prefix)

    def decode_step(
        self, state: PrefixState, prev_tokens: torch.Tensor, step: int | torch.Tensor
    ) -> tuple[torch.Tensor, PrefixState]:
        self.calls += 1
        step = int(step)
        if step > 0:
            state.prefix[:, step - 1] = prev_tokens
        rows = [
            self._probs(self.table.get((sentence, tuple(prefix[:step])), DEFAULT))
            for sentence, prefix in zip(state.sentence.tolist(), state.prefix.tolist(), strict=True)
        ]
        return torch.tensor(rows).log(), state  # (N, V) log-probs serve as logits

    def reorder_state(
        self, state: PrefixState, indices: torch.Tensor, sentences: torch.Tensor | None = None
    ) -> PrefixState:
        return PrefixState(state.sentence[indices], state.prefix[indices])

    @staticmethod
    def _probs(given: dict[int, float]) -> list[float]:
        rest = (1.0 - sum(given.values())) / (VOCAB - len(given))
        return [given.get(token, rest) for token in range(VOCAB)]


def scripted_search(
    sentences: list[int], limits: list[int], beam_size: int, alpha: float = 0.0, nbest: int = 1
) -> tuple[list[list[Hypothesis]], int]:
    """The beam search results for the scripted sentences, and how many steps it took."""
    core = ScriptedCore()
    src = torch.tensor(sentences)[:, None]  # (B, 1)
    lengths = torch.ones(len(sentences), dtype=torch.long)
    out = beam_search(core, src, lengths, torch.tensor(limits), beam_size, alpha, nbest)
    return out, core.calls


def assert_hypotheses(got: list[Hypothesis], expected: list[tuple[list[int], float, float]]):
    assert [h.tokens for h in got] == [tokens for tokens, _, _ in expected]
    assert [h.score for h in got] == pytest.approx([score for _, score, _ in expected], abs=1e-6)
    assert [h.log_prob for h in got] == pytest.approx([lp for _, _, lp in expected], abs=1e-6)


def test_beam_finds_the_sequence_greedy_misses() -> None:
    src, lengths, limits = torch.tensor([[0]]), torch.tensor([1]), torch.tensor([10])
    assert greedy_search(ScriptedCore(), src, lengths, limits) == [[4, 6]]
    (got,), _ = scripted_search([0], [10], beam_size=2, nbest=2)
    assert_hypotheses(got, [([5], log(0.36), log(0.36)), ([4, 6], log(0.18), log(0.18))])


def test_finished_hypothesis_keeps_its_score_while_others_continue() -> None:
    (got,), calls = scripted_search([1], [10], beam_size=2, nbest=2)
    long, short = log(0.6 * 0.9**3), log(0.3 * 0.9)
    assert_hypotheses(got, [([4, 6, 7], long, long), ([5], short, short)])
    assert calls == 4  # the beam went on after 5 EOS finished at step 1


@pytest.mark.parametrize(
    ("alpha", "expected"),
    [
        (0.0, [([6], log(0.36), log(0.36)), ([6, 4, 5], log(0.3168), log(0.3168))]),
        (1.0, [([6, 4, 5], log(0.3168) / 1.5, log(0.3168)), ([6], log(0.36) * 6 / 7, log(0.36))]),
    ],
)
def test_length_penalty_changes_the_winner(alpha, expected) -> None:
    (got,), _ = scripted_search([2], [10], beam_size=2, alpha=alpha, nbest=2)
    assert_hypotheses(got, expected)


def test_each_row_has_its_own_limit() -> None:
    got, calls = scripted_search([1, 1], [2, 5], beam_size=2, nbest=2)
    assert_hypotheses(got[0], [([4, 6], log(0.54), log(0.54)), ([5], log(0.27), log(0.27))])
    assert [h.tokens for h in got[1]] == [[4, 6, 7], [5]]
    assert calls == 4


@pytest.mark.parametrize(
    ("alpha", "limit", "nbest", "calls"),
    [
        (0.0, 20, 1, 2),  # after step 1, 4 6 (0.2) can no longer beat 5 EOS (0.36)
        (0.0, 20, 2, 3),  # a second finished hypothesis is needed: step 2 gives 4 6 EOS
        (1.0, 3, 1, 2),  # 4 6 could at best reach log(0.2) / lp(3) < log(0.36) / lp(2)
        (1.0, 20, 1, 3),  # ... but log(0.2) / lp(20) > log(0.36) / lp(2): go on
    ],
)
def test_early_stop(alpha, limit, nbest, calls) -> None:
    (got,), steps = scripted_search([0], [limit], beam_size=2, alpha=alpha, nbest=nbest)
    assert got[0].tokens == [5]
    assert got[0].log_prob == pytest.approx(log(0.36), abs=1e-6)
    assert steps == calls


def test_nbest_is_ordered_best_first() -> None:
    (got,), _ = scripted_search([3], [10], beam_size=3, nbest=3)
    expected = [([4], log(0.45), log(0.45)), ([5], log(0.27), log(0.27))]
    assert_hypotheses(got, [*expected, ([6], log(0.135), log(0.135))])
    (two,), _ = scripted_search([3], [10], beam_size=3, nbest=2)
    assert_hypotheses(two, expected)


def test_empty_batch_and_rows_without_room() -> None:
    core = ScriptedCore()
    empty = torch.zeros(0, 1, dtype=torch.long)
    assert beam_search(core, empty, empty[:, 0], empty[:, 0], beam_size=2) == []
    none = beam_search(core, torch.tensor([[0]]), torch.tensor([1]), torch.tensor([0]), 2, nbest=2)
    assert none == [[Hypothesis([], 0.0, 0.0)] * 2]
    assert core.calls == 0
    got, _ = scripted_search([0, 0], [0, 10], beam_size=2, nbest=2)
    assert got[0] == [Hypothesis([], 0.0, 0.0)] * 2
    assert [h.tokens for h in got[1]] == [[5], [4, 6]]


@pytest.mark.parametrize("sentence", [0, 1, 2, 3])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_larger_beam_is_not_worse_on_the_scripted_sentences(sentence, alpha) -> None:
    (narrow,), _ = scripted_search([sentence], [10], beam_size=1, alpha=alpha)
    for beam_size in (2, 3, 4):
        (wide,), _ = scripted_search([sentence], [10], beam_size=beam_size, alpha=alpha)
        assert wide[0].score >= narrow[0].score - 1e-6


def test_beam_of_one_is_greedy_on_the_copy_core() -> None:
    src = torch.tensor([[5, 6, EOS_ID, PAD_ID], [7, EOS_ID, PAD_ID, PAD_ID], [4, 4, 4, 4]])
    src_lengths, limits = torch.tensor([3, 2, 4]), torch.tensor([9, 1, 6])
    greedy = greedy_search(CopyCore(), src, src_lengths, limits)
    for alpha in (0.0, 1.0):
        beam = beam_search(CopyCore(), src, src_lengths, limits, beam_size=1, alpha=alpha)
        assert [row[0].tokens for row in beam] == greedy


# ---------------------------------------------------------------------------------------------
# Tiny real models


def tiny_model(arch: str) -> Seq2Seq[Any]:
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, d_model=16, encoder_layers=1, decoder_layers=2, num_heads=2)
    return build_seq2seq(config, VOCAB, VOCAB).eval()


def random_sources() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(4, 6) sources of different lengths ending in EOS, their lengths and output limits."""
    src = torch.randint(4, VOCAB, (4, 6))
    src_lengths = torch.tensor([6, 2, 4, 1])
    src = src.masked_fill(torch.arange(6)[None, :] >= src_lengths[:, None], PAD_ID)
    src[torch.arange(4), src_lengths - 1] = EOS_ID
    return src, src_lengths, torch.tensor([8, 3, 1, 12])


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_of_one_is_greedy_on_real_models(arch: str, alpha: float) -> None:
    core = tiny_model(arch)
    src, src_lengths, limits = random_sources()
    greedy = greedy_search(core, src, src_lengths, limits)
    beam = beam_search(core, src, src_lengths, limits, beam_size=1, alpha=alpha)
    assert [row[0].tokens for row in beam] == greedy
    assert any(len(row) > 1 for row in greedy)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_batch_beams_equal_one_sentence_at_a_time(arch: str) -> None:
    core = tiny_model(arch)
    src, src_lengths, limits = random_sources()
    batched = beam_search(core, src, src_lengths, limits, beam_size=4, alpha=1.0, nbest=2)
    for b, row in enumerate(batched):
        n = int(src_lengths[b])
        (alone,) = beam_search(
            core, src[b : b + 1, :n], src_lengths[b : b + 1], limits[b : b + 1], 4, 1.0, 2
        )
        assert [h.tokens for h in alone] == [h.tokens for h in row]
        assert [h.score for h in alone] == pytest.approx([h.score for h in row], abs=1e-5)
        assert [h.log_prob for h in alone] == pytest.approx([h.log_prob for h in row], abs=1e-5)
        assert all(len(h.tokens) <= limits[b] for h in row)
    assert any(len(row[0].tokens) > 1 for row in batched)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_beam_holding_every_sequence_is_exhaustive_search(arch: str, alpha: float) -> None:
    """With a limit of 2 and K = V * V nothing is ever pruned, so the best hypothesis is the best
    of all sequences without a forbidden token, scored here independently by teacher forcing."""
    core = tiny_model(arch)
    src, src_lengths = torch.tensor([[5, 7, 6, EOS_ID]]), torch.tensor([4])
    encoded = core.encode(src.expand(VOCAB, -1), src_lengths.expand(VOCAB))
    tgt_in = torch.stack([torch.full((VOCAB,), BOS_ID), torch.arange(VOCAB)], dim=1)  # (V, 2)
    log_probs = F.log_softmax(core.decode(tgt_in, encoded).float(), dim=-1)  # (V, 2, V)
    one, two = length_penalty(torch.tensor([1, 2]), alpha).tolist()
    candidates: list[tuple[float, list[int]]] = [(log_probs[0, 0, EOS_ID].item() / one, [])]
    allowed = set(range(VOCAB)) - set(NEVER_OUTPUT)
    for first in allowed - {EOS_ID}:
        for second in allowed:
            score = (log_probs[0, 0, first] + log_probs[first, 1, second]).item() / two
            candidates.append((score, [first] if second == EOS_ID else [first, second]))
    score, tokens = max(candidates)
    (got,) = beam_search(core, src, src_lengths, torch.tensor([2]), VOCAB * VOCAB, alpha)
    assert got[0].tokens == tokens
    assert got[0].score == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_pad_and_bos_are_never_output_even_when_most_likely(beam_size: int) -> None:
    """An undertrained model may rank BOS or PAD first; search must pick real tokens."""
    core = CopyCore()  # certain of src[b, t]: here BOS, then PAD, then 5, then EOS
    src = torch.tensor([[BOS_ID, PAD_ID, 5, EOS_ID]])
    (got,) = beam_search(core, src, torch.tensor([4]), torch.tensor([4]), beam_size)
    assert len(got[0].tokens) == 3 and got[0].tokens[2] == 5  # then EOS, as scripted
    assert BOS_ID not in got[0].tokens and PAD_ID not in got[0].tokens
    (greedy,) = greedy_search(CopyCore(), src, torch.tensor([4]), torch.tensor([4]))
    assert len(greedy) == 3 and greedy[2] == 5
    assert BOS_ID not in greedy and PAD_ID not in greedy


def test_a_finished_hypothesis_pushed_out_of_the_beam_is_still_the_answer() -> None:
    """4 (0.7) outscores EOS (0.25) at step 0; at step 1 both continuations of 4 (0.5, 0.45)
    outscore EOS, which leaves the beam of 2; both then end with a uniform last step, far worse
    than log 0.25, which must still be the answer."""
    table: Table = {
        (9, ()): {4: 0.7, EOS_ID: 0.25},
        (9, (4,)): {5: 0.5, 6: 0.45},
        (9, (4, 5)): {},
        (9, (4, 6)): {},
    }
    core = ScriptedCore(table)
    src, lengths = torch.tensor([[9]]), torch.tensor([1])
    (got,) = beam_search(core, src, lengths, torch.tensor([3]), beam_size=2, nbest=2)
    assert_hypotheses(got[:1], [([], log(0.25), log(0.25))])
    assert got[1].tokens[:2] == [4, 5] and got[1].log_prob == pytest.approx(log(0.7 * 0.5 * 0.1))
