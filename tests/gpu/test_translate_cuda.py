"""Translation on a CUDA device scores like the CPU (float32; needs a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nmtbucket.config import SearchConfig
from nmtbucket.translation.translator import Translator

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

LINES = ["the cat sees a dog", "", "red", "a big green dog eats the small red cat"]


@pytest.mark.parametrize("beam", [1, 4])
def test_cuda_best_scores_equal_cpu_best_scores(tiny_run: Path, beam: int) -> None:
    search = SearchConfig(beam_size=beam, max_output_len=12)
    on_cpu = Translator.from_checkpoint(tiny_run, search=search, device="cpu")
    on_cuda = Translator.from_checkpoint(tiny_run, search=search, device="cuda")
    assert on_cuda.device.type == "cuda"
    # A barely trained model has near-ties that rounding may flip, so compare scores, not text.
    for got, want in zip(
        on_cuda.translate_nbest(LINES), on_cpu.translate_nbest(LINES), strict=True
    ):
        assert got[0].score == pytest.approx(want[0].score, abs=1e-3)
