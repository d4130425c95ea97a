"""Decoder steps replayed from captured graphs, tested on the CPU with the capture stand-in of
the executor tests (it records a step's operations and replays them on the same tensors): the
search finds what eager steps find, one graph per key in one pool, smaller keys as sentences
finish, and a second batch of the same bucket only replays."""

from __future__ import annotations

import pytest
import torch

from nmtbucket.config import SearchConfig
from nmtbucket.search import beam_search, greedy_search
from nmtbucket.search.captured import CapturedDecoder, sentence_slots
from nmtbucket.search.decoding import step_decoder
from tests.executor_cases import RecordedOps
from tests.unit.test_beam_search import random_sources, tiny_model


@pytest.mark.parametrize(("sentences", "slots"), [(1, 1), (2, 2), (3, 4), (4, 4), (5, 8)])
def test_sentence_slots_are_powers_of_two(sentences: int, slots: int) -> None:
    assert sentence_slots(sentences) == slots


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_replayed_steps_find_what_eager_steps_find(arch: str) -> None:
    core = tiny_model(arch)
    src, src_lengths, limits = random_sources()  # 4 sentences, limits 8, 3, 1, 12
    capture = RecordedOps()
    decoder = CapturedDecoder(core, capture=capture, new_pool=lambda: "the pool")
    eager = beam_search(core, src, src_lengths, limits, 3, 1.0, nbest=2, state_len=12)
    replayed = beam_search(decoder, src, src_lengths, limits, 3, 1.0, nbest=2, state_len=12)
    for want, got in zip(eager, replayed, strict=True):
        assert [h.tokens for h in got] == [h.tokens for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
    keys = set(decoder.graphs)
    assert {(6, 4, 1, 12), (6, 4, 3, 12)} <= keys  # step 0, then 3 hypotheses per sentence
    assert {slots for _, slots, _, _ in keys} > {4}  # smaller keys once sentences finished
    assert capture.pools == ["the pool"] * len(keys)  # one pool, each key captured once

    again = beam_search(decoder, src, src_lengths, limits, 3, 1.0, nbest=2, state_len=12)
    assert again == replayed and set(decoder.graphs) == keys
    assert len(capture.pools) == len(keys)  # the second batch only replayed

    greedy = greedy_search(decoder, src, src_lengths, limits)
    assert greedy == greedy_search(core, src, src_lengths, limits)


def test_graphs_are_chosen_on_a_gpu_only() -> None:
    core = tiny_model("transformer")
    cpu = torch.device("cpu")
    assert step_decoder(core, SearchConfig(), cpu) is core
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        assert isinstance(step_decoder(core, SearchConfig(), cuda), CapturedDecoder)
        assert step_decoder(core, SearchConfig(cuda_graphs=False), cuda) is core
