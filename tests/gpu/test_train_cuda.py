"""nmtbucket-train on a CUDA device with bf16 autocast (needs a GPU; CI never runs it)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.integration.train_cli import read_results, run_cli, tiny_overrides, write_tiny_corpus

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("model", ["transformer_tiny", "lstm"])
def test_training_on_cuda_with_bf16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    write_tiny_corpus(tmp_path / "data")
    overrides = tiny_overrides(
        tmp_path, **{"model": model, "trainer.device": "cuda", "trainer.bf16": True}
    )
    assert run_cli(monkeypatch, overrides) == 0
    results = read_results(tmp_path / "run")
    assert results["device"].startswith("cuda")
    assert results["updates"] == 4 and math.isfinite(results["test_loss"])


def test_a_language_model_resumes_mid_epoch_on_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_lm_train_cli import lm_overrides, write_tiny_text

    write_tiny_text(tmp_path / "data")
    cuda = {"trainer.device": "cuda", "trainer.validate_each_epoch": False}
    first = lm_overrides(tmp_path, "ptb_small", "run", **cuda, **{"trainer.max_updates": 5})
    assert run_cli(monkeypatch, first) == 0
    rest = lm_overrides(tmp_path, "ptb_small", "run", **cuda, **{"trainer.max_updates": 8})
    assert run_cli(monkeypatch, rest) == 0  # the carried state comes back on the CPU
    results = read_results(tmp_path / "run")
    assert results["device"].startswith("cuda") and results["updates"] == 8
    assert math.isfinite(results["test_perplexity"])
