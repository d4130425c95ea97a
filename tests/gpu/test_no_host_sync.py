"""The training loop never waits for the GPU inside an update (needs a GPU; CI never runs it).

``torch.cuda.set_sync_debug_mode("error")`` makes every operation that synchronises the host
with the device raise: it is on while the trainer runs each accumulation window (copies,
steps, the update, the schedule), and off for the tally reads, log lines and validation that
read the device on purpose. ``tests/integration/test_host_reads.py`` checks the same on the CPU
by counting host reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nmtbucket.training.step import TrainBatch
from nmtbucket.training.trainer import Trainer
from tests.integration.test_lm_train_cli import lm_overrides, write_tiny_text
from tests.integration.train_cli import read_results, run_cli, tiny_overrides, write_tiny_corpus

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("executor", ["eager", "cuda_graph"])
@pytest.mark.parametrize("task", ["translation", "lm_stream"])
def test_no_update_synchronises_the_host_with_the_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str, task: str
) -> None:
    train_window = Trainer._train_window
    windows = []

    def strict(trainer: Trainer, window: list[TrainBatch]) -> None:
        torch.cuda.set_sync_debug_mode("error")
        try:
            train_window(trainer, window)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        windows.append(len(window))

    monkeypatch.setattr(Trainer, "_train_window", strict)
    settings = {
        "trainer.device": "cuda",
        "trainer.executor": executor,
        "trainer.accumulate": 2,
        "trainer.max_updates": 6,
        "trainer.log_every": 3,
    }
    if task == "translation":
        write_tiny_corpus(tmp_path / "data")
        overrides = tiny_overrides(tmp_path, **settings)
    else:
        write_tiny_text(tmp_path / "data")
        overrides = lm_overrides(tmp_path, "ptb_small", "run", **settings)
    assert run_cli(monkeypatch, overrides) == 0
    assert read_results(tmp_path / "run")["updates"] == 6 and len(windows) == 6
