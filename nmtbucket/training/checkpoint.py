"""Checkpoints: written atomically (temp file, fsync, rename), loaded without running pickled code
(``torch.load(weights_only=True)``), and kept as "the last two whole training states plus the
best K weights"."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmtbucket.errors import NmtBucketError
from nmtbucket.faults import fault_point
from nmtbucket.files import atomic_write_bytes

LAST = "last.pt"
PREVIOUS = "previous.pt"  # the training state before last.pt: the fallback when last.pt is bad
UNREADABLE = "last.pt.unreadable"  # a last.pt that could not be read, set aside by a fallback
STATE_FORMAT = "nmtbucket-train-state/1"
WEIGHTS_FORMAT = "nmtbucket-weights/1"
log = logging.getLogger(__name__)


class CheckpointError(NmtBucketError):
    """A checkpoint that is missing, truncated or not an nmtbucket checkpoint."""


def save_checkpoint(
    path: str | Path, state: Mapping[str, Any], previous: str | Path | None = None
) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically; with ``previous``
    the old file is kept there (see :func:`~nmtbucket.files.atomic_writer`)."""
    atomic_write_bytes(path, lambda file: torch.save(dict(state), file), previous)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything that would need
    pickled code to load."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"cannot load checkpoint {path}: {err}; it is truncated or was not written by "
            "nmtbucket (only plain tensors and containers are accepted)"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state


def load_last_state(directory: str | Path) -> tuple[dict[str, Any], Path] | None:
    """The newest whole training state in ``directory`` and its file: ``last.pt``, or
    ``previous.pt`` when ``last.pt`` is missing (a save was cut between its two renames) or
    cannot be read (a warning names both). None when neither exists; a
    :class:`CheckpointError` naming both files when neither can be read."""
    directory = Path(directory)
    last, previous = directory / LAST, directory / PREVIOUS
    if not last.exists() and not previous.exists():
        return None
    try:
        return _training_state(last), last
    except CheckpointError as last_error:
        if not previous.exists():
            raise CheckpointError(
                f"{last_error}. There is no {PREVIOUS} to fall back to: delete {last} to "
                "start the run again from the beginning, or set another run_dir"
            ) from None
        try:
            state = _training_state(previous)
        except CheckpointError as previous_error:
            raise CheckpointError(
                f"neither training state in {directory} can be read: {last_error}; "
                f"{previous_error}. Delete both to start the run again from the beginning, or "
                "set another run_dir"
            ) from None
        if last.exists():
            log.warning(
                "%s; resuming from the state before it, %s, instead (the updates between the "
                "two are trained again)",
                last_error,
                previous,
            )
        else:
            log.warning("%s is missing; resuming from %s", last, previous)
        return state, previous


STATE_ENTRIES = ("model", "optimizer", "scheduler", "iterator", "keeper", "progress", "rng")
"""What every training state holds (besides ``format``)."""


def _training_state(path: Path) -> dict[str, Any]:
    state = load_checkpoint(path)
    if state.get("format") != STATE_FORMAT:
        raise CheckpointError(
            f"{path} is not an nmtbucket training state (format {state.get('format')!r})"
        )
    missing = [entry for entry in STATE_ENTRIES if entry not in state]
    if missing:
        raise CheckpointError(f"the training state {path} lacks {', '.join(missing)}")
    return state


def average_weights(paths: Sequence[str | Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the ``model`` weights in the checkpoints at ``paths`` (weight
    files or training states), summed in float64 and returned in each tensor's own dtype.

    Every checkpoint must hold the same tensor names and shapes; averaging the last or best few
    checkpoints of one run usually gives a small, free improvement (Vaswani et al., 2017)."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first_path = Path(paths[0])
    first_run, first = _model_weights(first_path)
    sums = {name: tensor.double() for name, tensor in first.items()}
    for path in paths[1:]:
        run, weights = _model_weights(Path(path))
        if run != first_run and None not in (run, first_run):  # None: saved before run ids
            raise CheckpointError(
                f"cannot average {path} with {first_path}: they come from two training runs "
                f"({run} and {first_run}); average checkpoints of one run only"
            )
        if weights.keys() != first.keys():
            different = sorted(weights.keys() ^ first.keys())[:5]
            raise CheckpointError(
                f"cannot average {path} with {first_path}: their tensor names differ "
                f"(for example {different}); average checkpoints of one run only"
            )
        for name, tensor in weights.items():
            if tensor.shape != first[name].shape:
                raise CheckpointError(
                    f"cannot average {path} with {first_path}: {name} has shape "
                    f"{tuple(tensor.shape)} against {tuple(first[name].shape)}"
                )
            sums[name] += tensor.double()
    return {name: (sums[name] / len(paths)).to(first[name].dtype) for name in first}


def _model_weights(path: Path) -> tuple[str | None, dict[str, torch.Tensor]]:
    """The run that saved a weights file or training state (None before runs had ids), and
    its ``model`` entry."""
    state = load_checkpoint(path)
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"checkpoint {path} holds no model weights (no 'model' entry)")
    run = state.get("run") or state.get("keeper", {}).get("run")
    return run, weights


@dataclass(frozen=True)
class BestEntry:
    """One kept best checkpoint: its file name, the update it was taken at and its score."""

    name: str
    update: int
    score: float


BEST_FILE = re.compile(r"best-(\d+)\.pt")
SNAPSHOT_FILE = re.compile(r"update-(\d+)\.pt")
"""File names of best checkpoints and weight snapshots; group 1 is the update."""


def best_name(update: int) -> str:
    """File name of the best checkpoint taken after ``update`` updates."""
    return f"best-{update:08d}.pt"


def snapshot_name(update: int) -> str:
    """File name of the weight snapshot taken after ``update`` updates."""
    return f"update-{update:08d}.pt"


def rank(score: float, update: int, higher_is_better: bool) -> tuple[float, int]:
    """Sort key of a best checkpoint: better score first; among equal scores the earlier
    update."""
    return (-score if higher_is_better else score, update)


class CheckpointKeeper:
    """Keeps, in ``directory``, ``last.pt`` (the whole training state) and ``previous.pt`` (the
    one before it, the fallback), the ``keep_best`` best checkpoints by validation score and
    the ``keep_last`` most recent weight snapshots (both weights only, the inputs of checkpoint
    averaging). Every file carries the id of the run that wrote it (:attr:`run`), so that
    weights of two runs are never averaged.

    ``higher_is_better`` says which way the validation score points (BLEU up, loss down). The
    kept lists are part of the training state, so a resumed run keeps pruning them. To stay
    consistent through a crash, save ``last.pt`` (which names the kept files) between
    :meth:`consider` or :meth:`snapshot` and :meth:`prune`.

    With ``writes`` False (ranks other than 0 under torchrun) it keeps the same lists and
    writes or deletes no file, so that every rank takes the same decisions.
    """

    def __init__(
        self,
        directory: str | Path,
        keep_best: int,
        higher_is_better: bool,
        keep_last: int = 0,
        writes: bool = True,
    ) -> None:
        if keep_best < 0 or keep_last < 0:
            raise NmtBucketError(
                f"trainer.keep_best and trainer.keep_last must be >= 0, got {keep_best} and "
                f"{keep_last}"
            )
        self.directory = Path(directory)
        self.keep_best = keep_best
        self.keep_last = keep_last
        self.higher_is_better = higher_is_better
        self.writes = writes
        self.best: list[BestEntry] = []
        self.recent: list[int] = []  # updates of the kept snapshots, oldest first
        self.run = uuid.uuid4().hex  # a new run's id; a resumed run loads its own

    @property
    def last_path(self) -> Path:
        return self.directory / LAST

    @property
    def best_path(self) -> Path | None:
        """The best checkpoint so far, or None before the first validation."""
        return self.directory / self.best[0].name if self.best else None

    def save_last(self, state: Mapping[str, Any]) -> None:
        """Save the whole training state as ``last.pt``, the one before kept as
        ``previous.pt``."""
        if self.writes:
            save_checkpoint(self.last_path, state, previous=self.directory / PREVIOUS)

    def consider(
        self, model_state: Mapping[str, torch.Tensor], update: int, score: float
    ) -> list[str]:
        """Save the weights as a best checkpoint if they rank among the best K. Returns the file
        names that fell out of the best K, for :meth:`prune` once ``last.pt`` is saved."""
        entry = BestEntry(best_name(update), update, score)
        ranked = sorted([e for e in self.best if e.update != update] + [entry], key=self._rank)
        kept, dropped = ranked[: self.keep_best], ranked[self.keep_best :]
        if entry in kept and self.writes:
            self._save_weights(entry.name, model_state, update, score=score)
        self.best = kept
        return [e.name for e in dropped]

    def snapshot(self, model_state: Mapping[str, torch.Tensor], update: int) -> list[str]:
        """Save the weights as the newest of the ``keep_last`` snapshots (nothing when it is
        0). Returns the file names of snapshots that are no longer kept, for :meth:`prune`."""
        if self.keep_last == 0:
            return []
        if self.writes:
            self._save_weights(snapshot_name(update), model_state, update)
        updates = sorted({*self.recent, update})
        self.recent = updates[-self.keep_last :]
        return [snapshot_name(u) for u in updates[: -self.keep_last]]

    def prune(self, dropped: list[str]) -> None:
        """Delete the named files (checkpoints that are no longer kept)."""
        for name in dropped if self.writes else []:
            (self.directory / name).unlink(missing_ok=True)
            fault_point("pruning")

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": [[e.name, e.update, e.score] for e in self.best],
            "recent": self.recent,
            "run": self.run,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the kept lists and the run id. Entries whose file is gone are dropped with a
        warning; weight files the state does not name (saved after it, by a run that was then
        cut short) are deleted, so that only the resumed run's own files are kept."""
        self.run = str(state.get("run") or self.run)  # absent before runs had ids
        entries = [BestEntry(str(n), int(u), float(s)) for n, u, s in state["best"]]
        self.best = [e for e in entries if (self.directory / e.name).is_file()]
        recent = [int(u) for u in state.get("recent", [])]  # absent before snapshots existed
        self.recent = [u for u in recent if (self.directory / snapshot_name(u)).is_file()]
        missing = {e.name for e in entries} - {e.name for e in self.best}
        missing |= {snapshot_name(u) for u in recent if u not in self.recent}
        for name in sorted(missing):
            log.warning("checkpoint %s is missing; forgetting it", self.directory / name)
        named = {e.name for e in self.best} | {snapshot_name(u) for u in self.recent}
        on_disk = sorted(self.directory.iterdir()) if self.directory.is_dir() else []
        for path in on_disk if self.writes else []:
            weights = BEST_FILE.fullmatch(path.name) or SNAPSHOT_FILE.fullmatch(path.name)
            if weights and path.name not in named:
                path.unlink()
                log.warning("removed %s: the training state resumed from does not keep it", path)

    def _rank(self, entry: BestEntry) -> tuple[float, int]:
        return rank(entry.score, entry.update, self.higher_is_better)

    def _save_weights(
        self, name: str, model_state: Mapping[str, torch.Tensor], update: int, **extra: float
    ) -> None:
        weights = {"format": WEIGHTS_FORMAT, "model": dict(model_state), "update": update}
        save_checkpoint(self.directory / name, {**weights, "run": self.run, **extra})
