"""E. Concurrency: a second trainer on a run folder stops at once naming the first; a lock left
by a killed holder blocks nothing. F. Stale folders: a new run in a folder that holds an
earlier run's weights but no state to resume sets them aside, and weights=best and average=K
then use only the new run's files."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from nmtbucket.training.checkpoint import CheckpointError, average_weights, load_checkpoint
from nmtbucket.training.kept_checkpoints import KeptCheckpoints
from nmtbucket.training.metrics import read_metrics
from tests.faults.harness import (
    LEDGER,
    TrainingChild,
    compared_and_recorded,
    differences,
    overrides,
    train,
    train_until_done,
)


def _wait_for_training(run: Path, child: TrainingChild) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.alive():
        if (run / "metrics.jsonl").is_file() and read_metrics(run):
            return
        time.sleep(0.01)
    raise AssertionError(f"the first trainer did not start training: {child.read_log()[-2000:]}")


def test_e_a_second_trainer_stops_naming_the_first_and_a_dead_holder_blocks_nothing(
    tmp_path: Path, corpus: Path, reference: Path
) -> None:
    argv = overrides(tmp_path, corpus)
    first = TrainingChild(argv, tmp_path)
    _wait_for_training(tmp_path / "run", first)
    first.signal(signal.SIGSTOP)  # holds its lock, mid-run
    try:
        second = train(argv, tmp_path)
    finally:
        first.signal(signal.SIGKILL)
    assert second.exitcode == 1, second.output[-3000:]
    assert f"pid {first.pid} on {socket.gethostname()}" in second.output
    assert first.wait().exitcode == -signal.SIGKILL
    train_until_done(argv, tmp_path)  # the dead holder's lock is gone with it
    assert not compared_and_recorded(
        "E. second trainer, then the holder killed", 2, tmp_path / "run", reference
    )


def test_f_a_new_run_sets_an_earlier_runs_weights_aside(
    tmp_path: Path, corpus: Path, reference: Path
) -> None:
    run = tmp_path / "run"
    earlier = train(overrides(tmp_path, corpus, **{"trainer.seed": 7}), tmp_path)
    assert earlier.exitcode == 0, earlier.output[-3000:]
    for name in ("last.pt", "previous.pt"):  # say they were corrupt and deleted
        (run / "checkpoints" / name).unlink()
    earlier_best = {p.name for p in (run / "checkpoints").glob("best-*.pt")}
    outcome = train_until_done(overrides(tmp_path, corpus), tmp_path)
    assert "moved them" in outcome.output
    (aside,) = run.glob("earlier-*")
    assert {p.name for p in (aside / "checkpoints").glob("best-*.pt")} == earlier_best
    lost = differences(run, reference)

    this_run = load_checkpoint(run / "checkpoints" / "last.pt")["keeper"]["run"]
    kept = KeptCheckpoints(run / "checkpoints", higher_is_better=True)
    for paths in (kept.weight_paths("best", 2), kept.weight_paths("last", 2)):
        runs = {load_checkpoint(path)["run"] for path in paths}
        if runs != {this_run}:
            lost.append(f"{[p.name for p in paths]} come from runs {runs}")
    LEDGER.record("F. stale weights in the run folder", 1, survived=not lost, lost=len(lost))
    assert not lost
    with pytest.raises(CheckpointError, match="two training runs"):
        average_weights(
            [run / "checkpoints" / "last.pt", aside / "checkpoints" / next(iter(earlier_best))]
        )
