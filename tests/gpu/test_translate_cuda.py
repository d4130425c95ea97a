"""Translation on a CUDA device scores like the CPU, with decoder steps replayed from CUDA
graphs or run eagerly (float32; needs a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nmtbucket.config import SearchConfig
from nmtbucket.search.captured import CapturedDecoder
from nmtbucket.translation.translator import Translator

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LINES = ["the cat sees a dog", "", "red", "a big green dog eats the small red cat"]


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_cuda_best_scores_equal_cpu_best_scores(
    tiny_run: Path, beam: int, cuda_graphs: bool
) -> None:
    search = SearchConfig(beam_size=beam, max_output_len=12, cuda_graphs=cuda_graphs)
    on_cpu = Translator.from_checkpoint(tiny_run, search=search, device="cpu")
    on_cuda = Translator.from_checkpoint(tiny_run, search=search, device="cuda")
    assert on_cuda.device.type == "cuda"
    assert isinstance(on_cuda.decoder, CapturedDecoder) == cuda_graphs
    # A barely trained model has near-ties that rounding may flip, so compare scores, not text.
    for got, want in zip(
        on_cuda.translate_nbest(LINES), on_cpu.translate_nbest(LINES), strict=True
    ):
        assert got[0].score == pytest.approx(want[0].score, abs=1e-3)


def test_a_second_call_replays_the_graphs_of_the_first(tiny_run: Path) -> None:
    translator = Translator.from_checkpoint(
        tiny_run, search=SearchConfig(beam_size=4, max_output_len=12), device="cuda"
    )
    assert isinstance(translator.decoder, CapturedDecoder)
    first = translator.translate_nbest(LINES)
    graphs = dict(translator.decoder.graphs)
    assert graphs
    assert translator.translate_nbest(LINES) == first
    assert translator.decoder.graphs == graphs  # nothing captured again
