"""Decoding in source-length buckets: bucket choice, batch sizes within the token budget, and
results back in input order."""

from __future__ import annotations

import pytest
import torch

from nmtbucket.bucketing.keys import LengthPair
from nmtbucket.config import SearchConfig
from nmtbucket.constants import PAD_ID
from nmtbucket.errors import NmtBucketError
from nmtbucket.search import Hypothesis
from nmtbucket.search.decoding import (
    beam_search_fn,
    decode_in_buckets,
    define_source_buckets,
    pad_sources,
    plan_batches,
    rows_per_batch,
)
from tests.unit.test_shrinking_search import RecordingCore


def test_source_buckets_are_the_distinct_source_lengths() -> None:
    keys = [LengthPair(8, 9), LengthPair(4, 6), LengthPair(8, 12), LengthPair(2, 2)]
    assert define_source_buckets(keys) == [2, 4, 8]


@pytest.mark.parametrize(
    ("src_len", "beam", "budget", "expected"),
    [
        (10, 1, 300, 10),  # limit 2 x 10 + 0 = 20: 300 // (1 x 30)
        (10, 5, 300, 2),  # 300 // (5 x 30)
        (10, 5, 100, 1),  # never fewer than one row
        (4, 2, 1000, 41),  # limit 8 (ratio 2, extra 0): 1000 // (2 x 12)
    ],
)
def test_rows_per_batch(src_len: int, beam: int, budget: int, expected: int) -> None:
    search = SearchConfig(beam_size=beam, token_budget=budget, max_output_extra=0)
    assert rows_per_batch(src_len, search) == expected


def test_plan_puts_each_input_in_the_smallest_bucket_that_holds_it() -> None:
    search = SearchConfig(beam_size=1, token_budget=36, max_output_extra=0)  # 3 rows at 4, 1 at 8
    lengths = [3, 8, 1, 4, 5, 2, 4]
    plan = plan_batches(lengths, [2, 4, 8], search)
    assert plan == [(2, [2, 5]), (4, [0, 3, 6]), (8, [1]), (8, [4])]


def test_plan_by_length_makes_fewer_fuller_batches_padded_to_their_longest() -> None:
    search = SearchConfig(beam_size=1, token_budget=36, max_output_extra=0)  # 4 rows at 3, ...
    lengths = [3, 8, 1, 4, 5, 2, 4]  # ... 3 at 4, 2 at 5, 1 at 8
    plan = plan_batches(lengths, [2, 4, 8], search, pad_to_buckets=False)
    assert plan == [(3, [2, 5, 0]), (4, [3, 6]), (5, [4]), (8, [1])]  # 3 and 5: no bucket


@pytest.mark.parametrize("pad_to_buckets", [True, False])
@pytest.mark.parametrize("bad", [0, 9])
def test_plan_rejects_empty_or_too_long_inputs(bad: int, pad_to_buckets: bool) -> None:
    with pytest.raises(NmtBucketError, match=r"decoding needs 1 to 8"):
        plan_batches([3, bad], [4, 8], SearchConfig(), pad_to_buckets)


def test_pad_sources() -> None:
    assert pad_sources([[5, 6], [7]], 3).tolist() == [[5, 6, PAD_ID], [7, PAD_ID, PAD_ID]]


def test_results_come_back_in_input_order_with_static_shapes_per_bucket() -> None:
    shapes: list[tuple[int, ...]] = []

    def echo(
        src: torch.Tensor, lengths: torch.Tensor, limits: torch.Tensor, state_len: int
    ) -> list:
        assert state_len == 2 * src.shape[1] + 10
        shapes.append(tuple(src.shape))
        assert bool((limits == 2 * lengths + 10).all())
        return [
            [Hypothesis(row[: int(n)].tolist(), 0.0, 0.0)]
            for row, n in zip(src, lengths, strict=True)
        ]

    sources = [[4, 5, 3], [6, 3], [7, 8, 9, 10, 3], [11, 3]]
    # 3 rows of length 2, 2 of 5; the static search pads to buckets on any device
    search = SearchConfig(beam_size=1, token_budget=50, static_shapes=True)
    found = decode_in_buckets(sources, [2, 5], search, echo, torch.device("cpu"))
    assert [h[0].tokens for h in found] == sources
    assert shapes == [(2, 2), (2, 5)]  # every batch padded to its bucket's source length


@pytest.mark.parametrize("static_shapes", [False, True])
def test_search_config_chooses_the_search(static_shapes: bool) -> None:
    """``search.static_shapes`` picks the static-shape search, whose rows all stay to the end;
    otherwise the batch shrinks as sentences finish (here sentence 3 at step 1)."""
    core = RecordingCore()
    search = SearchConfig(beam_size=3, static_shapes=static_shapes)
    search_fn = beam_search_fn(core, search)
    src, ones = torch.tensor([[3], [1]]), torch.ones(2, dtype=torch.long)
    search_fn(src, ones, ones * 10, state_len=10)
    assert core.fed_rows == ([6, 6, 6, 6] if static_shapes else [2, 6, 3, 3])
