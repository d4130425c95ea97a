"""Preemption: SIGTERM or SIGUSR1 makes nmtbucket-train finish its update, save, and exit with
status 75; the same command then continues to the end, every update logged once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nmtbucket.training.checkpoint import load_checkpoint
from nmtbucket.training.metrics import read_metrics
from nmtbucket.training.stop_signals import EXIT_INTERRUPTED
from tests.integration.train_cli import tiny_overrides, write_tiny_corpus

REPO = Path(__file__).resolve().parents[2]
UPDATES = 300


def _wait_for_train_rows(run: Path, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (run / "metrics.jsonl").is_file():
            rows = read_metrics(run)
            if sum(row["kind"] == "train" for row in rows) >= count:
                return
        time.sleep(0.02)
    raise AssertionError("training did not start logging in time")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_saves_exits_75_and_the_same_command_continues(
    tmp_path: Path, stop: signal.Signals
) -> None:
    write_tiny_corpus(tmp_path / "data")
    settings = {"trainer.max_updates": UPDATES, "trainer.validate_every": 0}
    command = [sys.executable, "-m", "nmtbucket.cli.train", *tiny_overrides(tmp_path, **settings)]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    run = tmp_path / "run"
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_train_rows(run, 3, process)
    process.send_signal(stop)
    _, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, err[-3000:]
    assert "rerun the same command to continue" in err
    stopped = load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["updates"]
    assert 3 <= stopped < UPDATES
    assert not (run / "results.json").exists()  # not scored: the run is not over
    trained = [row["update"] for row in read_metrics(run) if row["kind"] == "train"]
    assert trained == list(range(1, stopped + 1))

    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    trained = [row["update"] for row in read_metrics(run) if row["kind"] == "train"]
    assert trained == list(range(1, UPDATES + 1))  # each update once, none lost
    assert load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["updates"] == UPDATES
