"""The training loop never waits for the GPU between reads of the update tally (needs a GPU;
CI never runs it).

``torch.cuda.set_sync_debug_mode("error")`` makes every operation that synchronises the host
with the device raise. It is on for the whole training loop (copies, steps, updates, the
schedule, limits, the progress bar) and off only inside what reads the device on purpose: the
tally read, log lines, validation, saves, and the capture of every key's graphs before
training. ``tests/integration/test_host_reads.py`` checks the same on the CPU by counting host
reads."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from nmtbucket.training.trainer import Trainer
from tests.integration.test_host_reads import tiny_task_overrides
from tests.integration.train_cli import read_results, run_cli

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

READS_ON_PURPOSE = (
    "_read_tally",
    "_log_interval",
    "_validate_and_save",
    "_save",
    "_prepare_executors",
)


def _in_mode(mode: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        before = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(mode)
        try:
            return method(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode(before)

    return run


@pytest.mark.parametrize("executor", ["eager", "cuda_graph"])
@pytest.mark.parametrize("task", ["translation", "lm_stream"])
def test_no_update_synchronises_the_host_with_the_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str, task: str
) -> None:
    monkeypatch.setattr(
        Trainer, "_train_until_stopped", _in_mode("error", Trainer._train_until_stopped)
    )
    for name in READS_ON_PURPOSE:
        monkeypatch.setattr(Trainer, name, _in_mode("default", getattr(Trainer, name)))
    settings = {
        "trainer.device": "cuda",
        "trainer.executor": executor,
        "trainer.accumulate": 2,
        "trainer.max_updates": 6,
        "trainer.log_every": 3,
        "trainer.validate_every": 0,
    }
    assert run_cli(monkeypatch, tiny_task_overrides(tmp_path, task, **settings)) == 0
    assert read_results(tmp_path / "run")["updates"] == 6
