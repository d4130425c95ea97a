"""The beam search whose batch shrinks: its pieces on small tables (2K candidates, the K that go
on), then the whole search on scripted decoders that record what each step was fed, and on a
tiny Transformer whose cache shapes are recorded: step 0 with one row per sentence, finished
sentences leaving, a finished hypothesis never taking a live slot, encoder keys/values kept per
sentence and a self-attention cache that holds the generated positions only."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from nmtbucket.config import ModelConfig
from nmtbucket.constants import EOS_ID, PAD_ID
from nmtbucket.models import build_seq2seq
from nmtbucket.models.transformer import Transformer, TransformerDecoderState
from nmtbucket.search import beam_search, greedy_search, static_beam_search
from nmtbucket.search.beam import LiveBeams, first_beams
from nmtbucket.search.beam_pieces import NEG_INF
from nmtbucket.search.candidates import Candidates, continuing, top_candidates
from tests.unit.test_beam_search import ScriptedCore, scripted_search
from tests.unit.test_search import SRC, SRC_LENGTHS, CopyCore

log = math.log

# ---------------------------------------------------------------------------------------------
# The pieces


def test_top_candidates_rank_all_continuations_and_mark_those_that_end() -> None:
    raw_scores = torch.tensor([[0.0, -1.0]])  # (B=1, k=2)
    log_probs = torch.log(
        torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]])
    )  # (1, 2, V=4); token 2 plays EOS
    got = top_candidates(raw_scores, log_probs, 3, torch.tensor([False]), eos_id=2)
    assert got.parents.tolist() == [[0, 0, 1]]
    assert got.tokens.tolist() == [[3, 2, 0]]
    assert got.raw_scores[0].tolist() == pytest.approx([log(0.4), log(0.3), log(0.7) - 1])
    assert got.ends.tolist() == [[False, True, False]]
    at_limit = top_candidates(raw_scores, log_probs, 3, torch.tensor([True]), eos_id=2)
    assert at_limit.ends.tolist() == [[True, True, True]]


def test_top_candidates_are_filled_with_fillers_when_too_few_exist() -> None:
    log_probs = torch.log(torch.tensor([[[0.5, 0.3, 0.2]]]))  # k * V = 3 < width 4
    log_probs[0, 0, 0] = NEG_INF  # a forbidden token is no candidate either
    got = top_candidates(torch.zeros(1, 1), log_probs, 4, torch.tensor([False]), eos_id=2)
    assert got.tokens[0, :2].tolist() == [1, 2]
    assert got.valid.tolist() == [[True, True, False, False]]
    assert got.ends.tolist() == [[False, True, False, False]]


def candidates(ends: list[list[bool]], raw: list[list[float]]) -> Candidates:
    batch, width = len(ends), len(ends[0])
    tokens = torch.arange(width).repeat(batch, 1) + 10
    return Candidates(torch.zeros_like(tokens), tokens, torch.tensor(raw), torch.tensor(ends))


def test_continuing_picks_the_best_that_go_on_and_fills_dead_rows() -> None:
    got = candidates(
        [[True, False, True, False], [True, True, True, False]],
        [[-1.0, -2.0, -3.0, -4.0], [-1.0, -2.0, -3.0, NEG_INF]],
    )
    picked, raw = continuing(got, beam_size=2)
    assert picked[0].tolist() == [1, 3]  # the ending candidates 0 and 2 are skipped
    assert raw[0].tolist() == [-2.0, -4.0]
    assert raw[1].tolist() == [NEG_INF, NEG_INF]  # nothing goes on: two dead rows


def test_live_beams_select_keeps_whole_sentences() -> None:
    beams = first_beams(torch.tensor([4, 7, 9]), torch.tensor([3, 5, 2]), max_len=5, kept=2)
    beams.history[:, 0] = torch.tensor([1, 2, 3])
    kept = beams.select(torch.tensor([2, 0]))
    assert isinstance(kept, LiveBeams)
    assert kept.sentences.tolist() == [9, 4] and kept.limits.tolist() == [2, 3]
    assert kept.history[:, 0].tolist() == [3, 1]
    assert kept.kept.raw_scores.shape == (2, 2) and kept.kept.history.shape == (4, 5)


# ---------------------------------------------------------------------------------------------
# The whole search on scripted decoders


class RecordingCore(ScriptedCore):
    """The scripted decoder, recording the rows and the prefixes each step was fed."""

    def __init__(self) -> None:
        super().__init__()
        self.fed_rows: list[int] = []
        self.prefixes: list[list[list[int]]] = []

    def decode_step(self, state, prev_tokens, step):  # type: ignore[no-untyped-def]
        self.fed_rows.append(len(prev_tokens))
        logits, state = super().decode_step(state, prev_tokens, step)
        self.prefixes.append([row[: int(step)] for row in state.prefix.tolist()])
        return logits, state


def recorded_search(sentences: list[int], beam_size: int, **kwargs: Any) -> RecordingCore:
    core = RecordingCore()
    src = torch.tensor(sentences)[:, None]
    ones = torch.ones(len(sentences), dtype=torch.long)
    beam_search(core, src, ones, ones * 10, beam_size, **kwargs)
    return core


def test_step_zero_has_one_row_per_sentence_and_finished_sentences_leave() -> None:
    # sentence 3 ends at step 1 (its 3 best candidates all end); sentence 1 goes on to step 3
    core = recorded_search([3, 1], beam_size=3)
    assert core.fed_rows == [2, 6, 3, 3]


def test_a_finished_hypothesis_never_takes_a_live_slot() -> None:
    """Sentence 1: at step 1, 5 EOS finishes while 4 6 goes on. The static search keeps 5 EOS
    in its beam of 2 and feeds it PAD; here the next best candidate takes the slot."""
    core = recorded_search([1], beam_size=2, nbest=2)
    step_2 = core.prefixes[2]
    assert [4, 6] in step_2
    assert all(PAD_ID not in prefix for prefix in step_2)


@pytest.mark.parametrize("sentence", [0, 1, 2, 3])
@pytest.mark.parametrize("beam_size", [1, 2, 3])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_equals_the_static_search_on_the_scripted_sentences(
    sentence: int, beam_size: int, alpha: float
) -> None:
    """No finished hypothesis is pushed out of a beam in these tables, so both searches find
    the same hypotheses with the same scores."""
    nbest = min(beam_size, 2)
    got, _ = scripted_search([sentence], [10], beam_size, alpha, nbest)
    src, ones = torch.tensor([[sentence]]), torch.tensor([1])
    static = static_beam_search(
        ScriptedCore(), src, ones, torch.tensor([10]), beam_size, alpha, nbest
    )
    assert [h.tokens for h in got[0]] == [h.tokens for h in static[0]]
    assert [h.score for h in got[0]] == pytest.approx([h.score for h in static[0]], abs=1e-6)


def test_stops_once_its_k_best_so_far_are_finished_as_the_static_search_does() -> None:
    """EOS (0.35) finishes at step 0 and 4 EOS (0.54) at step 1: the 2 best so far are
    finished. The bound alone would go on: a live hypothesis of log-prob log(0.0067) could
    still reach log(0.0067) / lp(60) > log(0.54) / lp(2) at alpha 1 within the limit of 60."""
    table = {(5, ()): {4: 0.6, EOS_ID: 0.35}}
    src, ones, limit = torch.tensor([[5]]), torch.tensor([1]), torch.tensor([60])
    shrinking, static = ScriptedCore(table), ScriptedCore(table)
    (got,) = beam_search(shrinking, src, ones, limit, beam_size=2, alpha=1.0)
    (want,) = static_beam_search(static, src, ones, limit, beam_size=2, alpha=1.0)
    assert got[0].tokens == want[0].tokens == [4]
    assert shrinking.calls == static.calls == 2


def test_greedy_feeds_only_the_rows_still_going() -> None:
    core = CopyCore()
    assert greedy_search(core, SRC, SRC_LENGTHS, torch.tensor([9, 9, 2])) == [[5, 6], [7], [4, 4]]
    # row 1 (EOS) and row 2 (its limit of 2) end at step 1; step 2 feeds row 0 alone
    assert [len(fed) for fed in core.fed] == [3, 3, 1]


# ---------------------------------------------------------------------------------------------
# The cache shapes of a real model


class ShapeRecordingTransformer(Transformer):
    """A Transformer recording, at every step, (rows fed, sentences in the encoder keys/values,
    positions in the self-attention cache before the step)."""

    shapes: list[tuple[int, int, int]]

    def decode_step(
        self, state: TransformerDecoderState, prev_tokens: torch.Tensor, step: int | torch.Tensor
    ) -> tuple[torch.Tensor, TransformerDecoderState]:
        self.shapes.append((len(prev_tokens), state.cross_kv.shape[2], state.steps))
        return super().decode_step(state, prev_tokens, step)


def test_the_cache_holds_generated_positions_and_one_source_per_sentence() -> None:
    torch.manual_seed(0)
    config = ModelConfig(d_model=16, encoder_layers=1, decoder_layers=2, num_heads=2)
    reference = build_seq2seq(config, 10, 10).eval()
    core = ShapeRecordingTransformer(config, 10, 10).eval()
    core.load_state_dict(reference.state_dict())
    core.shapes = []
    src = torch.randint(4, 10, (3, 5))
    src[:, -1] = EOS_ID
    lengths, limits = torch.full((3,), 5), torch.tensor([2, 6, 4])
    got = beam_search(core, src, lengths, limits, beam_size=3, alpha=1.0)
    rows, sentences, cached = zip(*core.shapes, strict=True)
    assert rows[0] == 3 and sentences[0] == 3  # step 0: one row per sentence
    assert all(r == 3 * s for r, s in zip(rows[1:], sentences[1:], strict=True))  # K = 3 each
    assert list(cached) == list(range(len(core.shapes)))  # positions generated so far only
    assert sentences[-1] < 3  # sentences with lower limits have left
    assert len(core.shapes) == 6  # the longest limit
    assert got == beam_search(reference, src, lengths, limits, beam_size=3, alpha=1.0)
