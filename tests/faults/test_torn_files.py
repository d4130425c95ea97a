"""C. Torn files: a file of a run cut short, emptied or zero-filled (a disk fault, a careless
copy) either repairs itself, the result equal to the reference, or stops the run with status 1
and a message naming the file and the fix; never a traceback, never training on wrong data."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.harness import (
    LEDGER,
    Outcome,
    compared_and_recorded,
    overrides,
    train,
    train_until_done,
)


def _truncate(size: Callable[[int], int]) -> Callable[[Path], None]:
    def tear(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: size(len(data))])

    return tear


def _zero_fill(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


def _append(tail: bytes) -> Callable[[Path], None]:
    def tear(path: Path) -> None:
        path.write_bytes(path.read_bytes() + tail)

    return tear


def _interrupted(tmp_path: Path, corpus: Path) -> list[str]:
    """A run killed during its fourth save of last.pt: last.pt and previous.pt are kept."""
    argv = overrides(tmp_path, corpus)
    outcome = train(argv, tmp_path, env={"NMTBUCKET_FAULT": "before_fsync@last.pt:4"})
    assert outcome.exitcode == -signal.SIGKILL, outcome.output[-2000:]
    return argv


def _one(folder: Path, pattern: str) -> Path:
    (path,) = folder.glob(pattern)
    return path


REPAIRED = {
    "last.pt emptied": ("run/checkpoints/last.pt", _truncate(lambda n: 0)),
    "last.pt cut to 1 byte": ("run/checkpoints/last.pt", _truncate(lambda n: 1)),
    "last.pt cut to 512 bytes": ("run/checkpoints/last.pt", _truncate(lambda n: 512)),
    "last.pt cut to half": ("run/checkpoints/last.pt", _truncate(lambda n: n // 2)),
    "last.pt cut by 1 byte": ("run/checkpoints/last.pt", _truncate(lambda n: n - 1)),
    "last.pt zero-filled": ("run/checkpoints/last.pt", _zero_fill),
    "metrics.jsonl with a partial last row": ("run/metrics.jsonl", _append(b'{"kind": "tr')),
    "metrics.jsonl with a blank last row": ("run/metrics.jsonl", _append(b"\n")),
    "metrics.jsonl with a NUL-filled tail": ("run/metrics.jsonl", _append(bytes(64))),
    "buckets.json cut to half": ("run/buckets.json", _truncate(lambda n: n // 2)),
    "the run's sentencepiece model cut to half": ("run/src.spm.model", _truncate(lambda n: n // 2)),
    "the cached sentencepiece model cut to half": (
        "cache/sentencepiece/spm-*.model",
        _truncate(lambda n: n // 2),
    ),
    "the cached arrays cut to half": ("cache/encoded/*.pt", _truncate(lambda n: n // 2)),
}


@pytest.mark.parametrize(("pattern", "tear"), REPAIRED.values(), ids=REPAIRED.keys())
def test_c_a_torn_file_repairs_itself(
    tmp_path: Path,
    corpus: Path,
    reference: Path,
    pattern: str,
    tear: Callable[[Path], None],
) -> None:
    argv = _interrupted(tmp_path, corpus)
    torn = _one(tmp_path, pattern)
    tear(torn)
    outcome = train_until_done(argv, tmp_path)
    assert "Traceback" not in outcome.output
    set_aside = frozenset()
    if torn.name == "last.pt":  # the warning names both states; the torn one is set aside
        assert "last.pt" in outcome.output and "previous.pt" in outcome.output
        set_aside = frozenset({"last.pt.unreadable"})
    assert not compared_and_recorded(
        "C. torn file, repaired", 1, tmp_path / "run", reference, set_aside
    )


def _stops_clearly(outcome: Outcome, *named: str) -> None:
    assert outcome.exitcode == 1, outcome.output[-3000:]
    assert "Traceback" not in outcome.output, outcome.output[-3000:]
    message = outcome.output.split("nmtbucket-train: error: ")[-1]
    for name in named:
        assert name in message, message


def test_c_both_torn_states_stop_with_the_fix(tmp_path: Path, corpus: Path) -> None:
    argv = _interrupted(tmp_path, corpus)
    checkpoints = tmp_path / "run" / "checkpoints"
    for name in ("last.pt", "previous.pt"):
        _truncate(lambda n: n // 2)(checkpoints / name)
    outcome = train(argv, tmp_path)
    _stops_clearly(outcome, "last.pt", "previous.pt", "Delete both")
    LEDGER.record("C. torn file, clear error", 1, survived=True, lost=0)


def test_c_a_crash_in_the_first_save_after_a_fallback_loses_nothing(
    tmp_path: Path, corpus: Path, reference: Path
) -> None:
    """The torn last.pt is set aside when previous.pt is loaded, so the next save does not keep
    it as previous.pt: a kill between that save's two renames still finds a whole state."""
    argv = _interrupted(tmp_path, corpus)
    _truncate(lambda n: n // 2)(tmp_path / "run" / "checkpoints" / "last.pt")
    outcome = train(argv, tmp_path, env={"NMTBUCKET_FAULT": "between_renames@last.pt:1"})
    assert outcome.exitcode == -signal.SIGKILL, outcome.output[-2000:]
    train_until_done(argv, tmp_path)
    assert not compared_and_recorded(
        "C. torn file, repaired", 2, tmp_path / "run", reference, frozenset({"last.pt.unreadable"})
    )


def test_c_a_torn_config_stops_with_the_fix_that_then_works(
    tmp_path: Path, corpus: Path, reference: Path
) -> None:
    argv = _interrupted(tmp_path, corpus)
    config = tmp_path / "run" / "config.json"
    _truncate(lambda n: n // 2)(config)
    _stops_clearly(train(argv, tmp_path), str(config), "delete it")
    config.unlink()  # the fix the message gives
    train_until_done(argv, tmp_path)
    assert not compared_and_recorded("C. torn file, clear error", 1, tmp_path / "run", reference)
