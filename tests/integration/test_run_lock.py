"""The run-directory lock and the removal of temporary files left by killed writers."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nmtbucket.files import atomic_write_text, remove_leftover_temp_files
from nmtbucket.training.run_lock import RunDirectoryInUse, RunLock
from tests.integration.train_cli import run_cli, tiny_overrides, write_tiny_corpus

HOLD = """
import sys, time
from nmtbucket.training.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_host(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryInUse, match=rf"pid {holder.pid} on {socket.gethostname()}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(tmp_path):  # the kernel released the killed holder's lock
        pass


def test_only_the_temporary_files_of_atomic_writes_are_removed(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "last.pt", "state")
    leftover = tmp_path / ".last.pt.a1b2_c3d.tmp"  # what a writer killed before its rename leaves
    leftover.write_text("half a state")
    kept = [tmp_path / "notes.tmp", tmp_path / ".lock", tmp_path / ".hidden.tmp"]
    for path in kept:
        path.write_text("")
    assert remove_leftover_temp_files(tmp_path) == [leftover]
    assert not leftover.exists() and all(p.exists() for p in [*kept, tmp_path / "last.pt"])
    assert remove_leftover_temp_files(tmp_path / "missing") == []


def test_training_on_a_locked_run_dir_stops_at_once_and_leftovers_go_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tiny_corpus(tmp_path / "data")
    overrides = tiny_overrides(tmp_path, **{"trainer.max_updates": 1})
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        assert run_cli(monkeypatch, overrides) == 1
    assert "is in use by another training (pid" in capsys.readouterr().err
    leftover = run_dir / "checkpoints" / ".last.pt.zz99zz99.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"\0" * 100)
    assert run_cli(monkeypatch, overrides) == 0
    assert not leftover.exists() and (run_dir / "checkpoints" / "last.pt").is_file()
