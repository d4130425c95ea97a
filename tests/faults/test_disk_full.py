"""D. Disk full: a write that fails for want of space (ENOSPC on the n-th save of last.pt, or a
file-size limit, RLIMIT_FSIZE) stops the run with status 1 and a message saying how much space
is needed; the old state still loads and a rerun with space equals the reference."""

from __future__ import annotations

import resource
from pathlib import Path

from nmtbucket.training.checkpoint import load_checkpoint
from tests.faults.harness import compared_and_recorded, overrides, train, train_until_done


def _stopped_for_space(output: str, exitcode: int) -> str:
    assert exitcode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    message = output.split("nmtbucket-train: error: ")[-1]
    assert "no space left" in message and "MiB" in message, message
    return message


def test_d_a_full_disk_during_a_save_keeps_the_old_state(
    tmp_path: Path, corpus: Path, reference: Path
) -> None:
    argv = overrides(tmp_path, corpus)
    outcome = train(argv, tmp_path, env={"NMTBUCKET_FAULT": "before_fsync@last.pt:4:enospc"})
    message = _stopped_for_space(outcome.output, outcome.exitcode)
    assert "The previous last.pt is unchanged" in message
    kept = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")  # the third save
    assert kept["progress"]["updates"] < 12
    train_until_done(argv, tmp_path)
    assert not compared_and_recorded("D. disk full (ENOSPC)", 1, tmp_path / "run", reference)


def test_d_a_file_size_limit_is_a_clear_error_and_a_rerun_recovers(
    tmp_path: Path, corpus: Path, reference: Path
) -> None:
    """64 KiB: less than the sentencepiece model (about 240 KiB), the first big file written."""
    argv = overrides(tmp_path, corpus)
    limit = {resource.RLIMIT_FSIZE: 64 * 1024}
    outcome = train(argv, tmp_path, limits=limit)
    _stopped_for_space(outcome.output, outcome.exitcode)
    train_until_done(argv, tmp_path)
    assert not compared_and_recorded("D. disk full (RLIMIT_FSIZE)", 1, tmp_path / "run", reference)
