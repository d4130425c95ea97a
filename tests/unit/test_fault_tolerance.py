"""The pieces behind fault tolerance, one at a time: fault points (off unless armed), the two
kept training states and the fallback between them, a full disk, weight files the state does
not name, an earlier run's outputs set aside, and held-out splits checked at start."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from nmtbucket import faults
from nmtbucket.config import DataConfig
from nmtbucket.data.corpus import CorpusError
from nmtbucket.data.prepare import prepare_data
from nmtbucket.faults import fault_point
from nmtbucket.files import DiskFull, atomic_write_bytes
from nmtbucket.training.checkpoint import (
    STATE_ENTRIES,
    STATE_FORMAT,
    CheckpointError,
    CheckpointKeeper,
    average_weights,
    load_last_state,
    save_checkpoint,
)
from nmtbucket.training.metrics import MetricsLogger
from nmtbucket.training.run_directory import set_aside_earlier_outputs
from tests.integration.train_cli import write_tiny_corpus


def test_a_fault_point_does_nothing_unless_armed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "_reached", {})
    monkeypatch.delenv("NMTBUCKET_FAULT", raising=False)
    fault_point("before_rename@last.pt")
    monkeypatch.setenv("NMTBUCKET_FAULT", "before_rename@other.pt:1:enospc")
    fault_point("before_rename@last.pt")  # another point
    monkeypatch.setenv("NMTBUCKET_FAULT", "twice:2:enospc")
    fault_point("twice")  # the first visit
    with pytest.raises(OSError) as raised:
        fault_point("twice")
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.setenv("NMTBUCKET_FAULT", "point:0")
    with pytest.raises(ValueError, match="POINT:N"):
        fault_point("point")


def _state(update: int) -> dict[str, object]:
    """A training state with every entry, the update in ``progress``."""
    state: dict[str, object] = {entry: {} for entry in STATE_ENTRIES}
    weights = {"w": torch.full((3,), update)}
    return {**state, "format": STATE_FORMAT, "progress": {"updates": update}, "model": weights}


def test_the_previous_state_is_kept_and_taken_when_last_is_torn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = CheckpointKeeper(tmp_path, keep_best=1, higher_is_better=True)
    assert load_last_state(tmp_path) is None
    keeper.save_last(_state(1))
    keeper.save_last(_state(2))
    state, path = load_last_state(tmp_path) or ({}, None)
    assert path == tmp_path / "last.pt" and state["progress"] == {"updates": 2}
    save_checkpoint(tmp_path / "last.pt", {"format": STATE_FORMAT, "model": {}})
    with caplog.at_level(logging.WARNING):
        state, path = load_last_state(tmp_path) or ({}, None)
    assert path == tmp_path / "previous.pt" and "lacks optimizer" in caplog.text
    keeper.save_last(_state(1))
    keeper.save_last(_state(2))
    (tmp_path / "last.pt").write_bytes((tmp_path / "last.pt").read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        state, path = load_last_state(tmp_path) or ({}, None)
    assert path == tmp_path / "previous.pt" and state["progress"] == {"updates": 1}
    assert "last.pt" in caplog.text and "previous.pt" in caplog.text
    (tmp_path / "last.pt").unlink()  # a save cut between its two renames
    assert load_last_state(tmp_path) is not None
    (tmp_path / "previous.pt").write_bytes(b"")
    (tmp_path / "last.pt").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match="neither training state"):
        load_last_state(tmp_path)


def test_a_full_disk_keeps_the_old_file_and_says_what_is_needed(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1))
    old = path.read_bytes()

    def fill_the_disk(file: object) -> None:
        torch.save(_state(2), file)  # type: ignore[arg-type]
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull, match=r"needs about .* MiB .* previous last.pt is unchanged"):
        atomic_write_bytes(path, fill_the_disk, previous=tmp_path / "previous.pt")
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp, no previous


def test_resuming_deletes_weight_files_the_state_does_not_name(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, keep_best=2, higher_is_better=True, keep_last=1)
    weights = {"w": torch.zeros(2)}
    keeper.consider(weights, 2, 1.0)
    keeper.snapshot(weights, 2)
    saved = keeper.state_dict()
    keeper.consider(weights, 4, 2.0)  # saved after the state, which a crash then lost
    keeper.snapshot(weights, 4)
    resumed = CheckpointKeeper(tmp_path, keep_best=2, higher_is_better=True, keep_last=1)
    resumed.load_state_dict(saved)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-00000002.pt", "update-00000002.pt"]
    assert resumed.run == keeper.run


def test_a_new_run_sets_aside_an_earlier_runs_outputs(tmp_path: Path) -> None:
    assert set_aside_earlier_outputs(tmp_path) is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best-00000002.pt").write_bytes(b"x")
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "test.hyp.txt").write_text("a\n")
    (tmp_path / "config.json").write_text("{}")
    aside = set_aside_earlier_outputs(tmp_path)
    assert aside is not None and aside.name.startswith("earlier-")
    assert sorted(p.name for p in aside.iterdir()) == [
        "checkpoints",
        "metrics.jsonl",
        "test.hyp.txt",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", aside.name]


@pytest.mark.parametrize("role", ["valid", "test"])
def test_an_empty_held_out_split_is_refused_before_training(tmp_path: Path, role: str) -> None:
    folder = write_tiny_corpus(tmp_path / "data")
    for side in ("en", "de"):
        (folder / f"{role}.{side}").write_text("")
    config = DataConfig(
        root=str(tmp_path / "data"), dir="tiny", src_lang="en", tgt_lang="de", train="train",
        valid="valid", test="test", cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    config.tokenizer.vocab_size = 40
    with pytest.raises(CorpusError, match=f"the {role} split .* is empty"):
        prepare_data(config, progress=False, log=lambda message: None)


class _FillsUp:
    """A file whose disk fills up after ``room`` bytes, as torch.save sees it."""

    def __init__(self, file: Any, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data: bytes) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(self.file.write(data))

    def flush(self) -> None:
        self.file.flush()


def test_a_full_disk_inside_torch_save_is_recognised(tmp_path: Path) -> None:
    """torch.save reports its write's OSError as a RuntimeError raised from it."""
    path = tmp_path / "state.pt"
    with pytest.raises(DiskFull, match="more than"):
        atomic_write_bytes(path, lambda file: torch.save(_state(1), _FillsUp(file, 600)))
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_appending_metrics_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    metrics = MetricsLogger(tmp_path, tensorboard=False)
    metrics.log("train", 1, train_loss=1.0)
    monkeypatch.setattr(Path, "open", no_space)
    with pytest.raises(DiskFull, match=r"metrics\.jsonl: no space left"):
        metrics.log("train", 2, train_loss=1.0)


def test_weights_of_two_runs_are_never_averaged(tmp_path: Path) -> None:
    weights = {"w": torch.zeros(2)}
    for name, run in (("a.pt", "one"), ("b.pt", "two"), ("c.pt", None), ("d.pt", "one")):
        save_checkpoint(tmp_path / name, {"model": weights, "run": run})
    assert torch.equal(average_weights([tmp_path / "a.pt", tmp_path / "d.pt"])["w"], weights["w"])
    average_weights([tmp_path / "a.pt", tmp_path / "c.pt"])  # c was saved before run ids
    with pytest.raises(CheckpointError, match="two training runs"):
        average_weights([tmp_path / "a.pt", tmp_path / "b.pt"])
