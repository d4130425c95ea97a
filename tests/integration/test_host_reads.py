"""The training loop reads nothing back from the device between reads of the update tally.

On a GPU every host read of a tensor's value makes the CPU wait for everything queued before
it. On the CPU they are counted here, by where they happen: reads of single values go through
the aten operator ``_local_scalar_dense`` (``float(t)``, ``t.item()``, ``bool(t)``), caught by a
dispatch mode; ``tolist``, ``numpy`` and ``cpu`` do not dispatch one, so they are wrapped. Left
out are the reads of the host batches' own sizes (in ``nmtbucket/data``: those tensors are
never on the device). On a GPU, ``tests/gpu/test_no_host_sync.py`` checks the same with CUDA's
own detector."""

from __future__ import annotations

import functools
import traceback
from collections import Counter
from collections.abc import Callable
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


class _HostReads(TorchDispatchMode):
    """Host reads of tensor values during training, by (phase, update): phase ``window`` while
    an accumulation window trains (the update it makes), ``between`` after it (the update
    just made: logging, validating, saving, limits)."""

    def __init__(self) -> None:
        super().__init__()
        self.trainer: Trainer | None = None
        self.window: int | None = None  # the update the window in progress makes
        self.reads: Counter[tuple[str, int]] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count()
        return func(*args, **(kwargs or {}))

    def count(self) -> None:
        if self.trainer is None or _reads_host_data():
            return
        if self.window is not None:
            self.reads["window", self.window] += 1
        else:
            self.reads["between", self.trainer.progress.updates] += 1


def tiny_task_overrides(tmp_path: Path, task: str, **settings: Any) -> list[str]:
    """Write the tiny data of ``task`` (``translation`` or ``lm_stream``) under ``tmp_path``;
    the overrides of a tiny run on it in ``tmp_path/run`` with ``settings``, ending at
    ``trainer.max_updates`` (no epoch limit)."""
    if task == "translation":
        write_tiny_corpus(tmp_path / "data")
        return tiny_overrides(tmp_path, **settings)
    write_tiny_text(tmp_path / "data")
    return lm_overrides(tmp_path, "ptb_small", "run", **{"trainer.max_epochs": 0, **settings})


def _reads_host_data() -> bool:
    return any(HOST_DATA in frame.filename for frame in traceback.extract_stack())


def _counting(counter: _HostReads, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def counted(*args: Any, **kwargs: Any) -> Any:
        counter.count()
        return method(*args, **kwargs)

    return counted


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> _HostReads:
    """Counts the host reads of the training loop (validation and test at the end of ``fit``
    are outside it)."""
    counter = _HostReads()
    for name in ("tolist", "numpy", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, _counting(counter, getattr(torch.Tensor, name)))
    train, train_window = Trainer._train_until_stopped, Trainer._train_window

    def counted_training(trainer: Trainer) -> None:
        counter.trainer = trainer
        try:
            with counter:
                train(trainer)
        finally:
            counter.trainer = None

    def counted_window(trainer: Trainer, window: list[Any]) -> None:
        counter.window = trainer.progress.updates + 1
        try:
            train_window(trainer, window)
        finally:
            counter.window = None

    monkeypatch.setattr(Trainer, "_train_until_stopped", counted_training)
    monkeypatch.setattr(Trainer, "_train_window", counted_window)
    return counter


@pytest.mark.parametrize("task", ["translation", "lm_stream"])
def test_training_reads_the_device_only_when_it_reads_the_update_tally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_reads: _HostReads, task: str
) -> None:
    quiet = {
        "trainer.max_updates": UPDATES,
        "trainer.log_every": LOG_EVERY,
        "trainer.validate_every": 0,
        "trainer.validate_each_epoch": False,
        "trainer.save_every": 0,
        "trainer.accumulate": 2,
    }
    assert run_cli(monkeypatch, tiny_task_overrides(tmp_path, task, **quiet)) == 0
    assert read_results(tmp_path / "run")["updates"] == UPDATES
    reading = {u for u in range(1, UPDATES + 1) if u % LOG_EVERY == 0 or u % READ_TALLY_EVERY == 0}
    assert {update for phase, update in host_reads.reads if phase == "window"} == set()
    assert {update for phase, update in host_reads.reads} <= reading, host_reads.reads
    assert all(host_reads.reads["between", u] >= 2 for u in reading)  # the tally and the log


def test_the_count_sees_a_read_of_the_loss_after_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_reads: _HostReads
) -> None:
    build = Trainer.__init__

    def reading_losses(trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        build(trainer, *args, **kwargs)
        train_step = trainer.model.train_step

        def read_back(*step_args: Any, **step_kwargs: Any) -> torch.Tensor:
            loss = train_step(*step_args, **step_kwargs)
            loss.tolist()  # what the loop did before the tally: the loss read after every step
            return loss

        trainer.model.train_step = read_back  # type: ignore[method-assign]

    monkeypatch.setattr(Trainer, "__init__", reading_losses)
    write_tiny_corpus(tmp_path / "data")
    overrides = tiny_overrides(tmp_path, **{"trainer.log_every": 0, "trainer.accumulate": 2})
    assert run_cli(monkeypatch, overrides) == 0
    assert {update for phase, update in host_reads.reads if phase == "window"} == {1, 2, 3, 4}
