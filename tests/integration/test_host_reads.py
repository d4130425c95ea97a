"""The training loop reads nothing back from the device between reads of the update tally.

Every host read of a tensor's value (``float(t)``, ``t.item()``, ``bool(t)``) goes through the
aten operator ``_local_scalar_dense``; on a GPU each one makes the CPU wait for everything
queued before it. A dispatch mode counts them on the CPU during training, by update, leaving
out the reads of the host batches' own sizes (``nmtbucket/data``: those tensors are never on
the device). On a GPU, ``tests/gpu/test_no_host_sync.py`` checks the same with CUDA's own sync
detector."""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nmtbucket.training.trainer import READ_TALLY_EVERY, Trainer
from tests.integration.test_lm_train_cli import lm_overrides, write_tiny_text
from tests.integration.train_cli import read_results, run_cli, tiny_overrides, write_tiny_corpus

LOG_EVERY = 5
UPDATES = 12
HOST_DATA = f"{Path('nmtbucket') / 'data'}"


class _DeviceReads(TorchDispatchMode):
    """Counts host reads of tensor values, by the trainer's update count at the time."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__()
        self.trainer = trainer
        self.by_update: Counter[int] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default and not _reads_host_data():
            self.by_update[self.trainer.progress.updates] += 1
        return func(*args, **(kwargs or {}))


def _reads_host_data() -> bool:
    return any(HOST_DATA in frame.filename for frame in traceback.extract_stack())


@contextmanager
def _counted_training(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[_DeviceReads]]:
    """Count the reads of every trainer's training loop (validation and test at the end of
    ``fit`` are outside it)."""
    counters: list[_DeviceReads] = []
    train = Trainer._train_until_stopped

    def counted(trainer: Trainer) -> None:
        counter = _DeviceReads(trainer)
        counters.append(counter)
        with counter:
            train(trainer)

    monkeypatch.setattr(Trainer, "_train_until_stopped", counted)
    yield counters


@pytest.mark.parametrize("task", ["translation", "lm_stream"])
def test_training_reads_the_device_only_when_it_reads_the_update_tally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str
) -> None:
    quiet = {
        "trainer.max_updates": UPDATES,
        "trainer.log_every": LOG_EVERY,
        "trainer.validate_every": 0,
        "trainer.validate_each_epoch": False,
        "trainer.save_every": 0,
        "trainer.accumulate": 2,
    }
    if task == "translation":
        write_tiny_corpus(tmp_path / "data")
        overrides = tiny_overrides(tmp_path, **quiet)
    else:
        write_tiny_text(tmp_path / "data")
        overrides = lm_overrides(tmp_path, "ptb_small", "run", **quiet, **{"trainer.max_epochs": 0})
    with _counted_training(monkeypatch) as counters:
        assert run_cli(monkeypatch, overrides) == 0
    assert read_results(tmp_path / "run")["updates"] == UPDATES
    (reads,) = counters
    reading = {u for u in range(1, UPDATES + 1) if u % LOG_EVERY == 0 or u % READ_TALLY_EVERY == 0}
    assert set(reads.by_update) <= reading, reads.by_update  # none at the other updates
    assert all(reads.by_update[u] > 0 for u in reading)  # the detector sees the reads there
