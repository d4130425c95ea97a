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
