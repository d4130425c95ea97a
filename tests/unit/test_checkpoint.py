"""Checkpoints are written atomically, loaded without pickled code, and pruned to the best K."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from nmtbucket.files import atomic_write_text
from nmtbucket.training.checkpoint import (
    CheckpointError,
    CheckpointKeeper,
    load_checkpoint,
    save_checkpoint,
)


def test_round_trip_keeps_tensors_and_plain_values(tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).view(2, 3), "step": 7, "names": ["a", "b"], "x": None}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["w"], state["w"])
    assert loaded["step"] == 7 and loaded["names"] == ["a", "b"] and loaded["x"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_loading_refuses_pickled_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model": _Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match=r"cannot load checkpoint .*evil\.pt"):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


def test_missing_and_truncated_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(100)})
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "c.pt")


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    atomic_write_text(path, "old")

    def explode(file: object) -> None:
        raise RuntimeError("disk full")

    from nmtbucket.files import atomic_write_bytes

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_bytes(path, explode)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["note.txt"]


@pytest.mark.parametrize(
    ("higher", "scores", "expected"),
    [
        (True, [10.0, 30.0, 20.0, 25.0], [2, 4]),  # BLEU: keep the two highest
        (False, [3.0, 1.0, 2.0, 0.5], [4, 2]),  # loss: keep the two lowest, best first
        (True, [5.0, 5.0, 5.0], [1, 2]),  # ties: the earlier update wins
    ],
)
def test_keeper_keeps_best_k(
    tmp_path: Path, higher: bool, scores: list[float], expected: list[int]
) -> None:
    keeper = CheckpointKeeper(tmp_path, keep_best=2, higher_is_better=higher)
    for update, score in enumerate(scores, start=1):
        dropped = keeper.consider({"w": torch.full((1,), float(update))}, update, score)
        older = set(dropped) - {f"best-{update:08d}.pt"}
        assert older <= {p.name for p in tmp_path.iterdir()}  # deleted only by prune
        keeper.prune(dropped)
    assert [e.update for e in keeper.best] == expected
    files = sorted(p.name for p in tmp_path.glob("best-*.pt"))
    assert files == sorted(f"best-{u:08d}.pt" for u in expected)
    assert keeper.best_path == tmp_path / f"best-{expected[0]:08d}.pt"
    best = load_checkpoint(keeper.best_path)
    assert best["update"] == expected[0] and float(best["model"]["w"]) == expected[0]

    restored = CheckpointKeeper(tmp_path, keep_best=2, higher_is_better=higher)
    restored.load_state_dict(keeper.state_dict())
    assert restored.best == keeper.best
    (tmp_path / f"best-{expected[0]:08d}.pt").unlink()  # lost in a crash, say
    restored.load_state_dict(keeper.state_dict())
    assert [e.update for e in restored.best] == expected[1:]


def test_keeper_keeps_the_last_k_snapshots(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, keep_best=1, higher_is_better=True, keep_last=2)
    for update in (100, 200, 300):
        dropped = keeper.snapshot({"w": torch.full((1,), float(update))}, update)
        assert set(dropped) <= {p.name for p in tmp_path.iterdir()}  # deleted only by prune
        keeper.prune(dropped)
    assert keeper.recent == [200, 300]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "update-00000200.pt",
        "update-00000300.pt",
    ]
    assert float(load_checkpoint(tmp_path / "update-00000300.pt")["model"]["w"]) == 300

    restored = CheckpointKeeper(tmp_path, keep_best=1, higher_is_better=True, keep_last=2)
    (tmp_path / "update-00000200.pt").unlink()
    restored.load_state_dict(keeper.state_dict())
    assert restored.recent == [300]
    restored.load_state_dict({"best": []})  # a state saved before snapshots existed
    assert restored.recent == []


def test_keeper_without_snapshots_writes_none(tmp_path: Path) -> None:
    keeper = CheckpointKeeper(tmp_path, keep_best=1, higher_is_better=True)
    assert keeper.snapshot({"w": torch.zeros(1)}, 5) == []
    assert list(tmp_path.iterdir()) == []
