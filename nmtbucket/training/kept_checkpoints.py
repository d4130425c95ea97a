"""The checkpoints a training run kept, read back: the best K by validation score, the newest
weight snapshots and ``last.pt``, and which of them to load (and average) for ``weights=best``,
``weights=last`` or a file. :class:`~nmtbucket.training.checkpoint.CheckpointKeeper` writes
them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nmtbucket.errors import NmtBucketError
from nmtbucket.training.checkpoint import (
    BEST_FILE,
    LAST,
    SNAPSHOT_FILE,
    CheckpointError,
    load_checkpoint,
    rank,
)

WEIGHT_CHOICES = ("best", "last")


@dataclass(frozen=True)
class KeptCheckpoints:
    """The checkpoint files in ``directory`` (a run's ``checkpoints/``); ``higher_is_better``
    says which way the run's early-stopping metric points."""

    directory: Path
    higher_is_better: bool

    def best_paths(self) -> list[Path]:
        """The kept best checkpoints, best first by their validation score."""
        ranked = []
        for path in self._matching(BEST_FILE):
            score = load_checkpoint(path).get("score")
            if not isinstance(score, (int, float)):
                raise CheckpointError(f"best checkpoint {path} has no validation score")
            ranked.append((*rank(score, _update(path, BEST_FILE), self.higher_is_better), path))
        return [path for *_, path in sorted(ranked)]

    def snapshot_paths(self) -> list[Path]:
        """The kept weight snapshots (``trainer.keep_last``), newest first."""
        snapshots = self._matching(SNAPSHOT_FILE)
        return sorted(snapshots, key=lambda p: _update(p, SNAPSHOT_FILE), reverse=True)

    def weight_paths(self, weights: str = "best", average: int = 1) -> list[Path]:
        """The checkpoint files to load (and average): ``weights`` is ``best`` (the ``average``
        best), ``last`` (``last.pt``, or the ``average`` newest snapshots) or a file path."""
        if average < 1:
            raise NmtBucketError(f"average must be at least 1, got {average}")
        if weights not in WEIGHT_CHOICES:
            path = Path(weights)
            if average != 1:
                raise NmtBucketError(
                    f"average={average} needs weights=best or weights=last, not a file"
                )
            if not path.is_file():
                raise NmtBucketError(
                    f"weights={weights} is neither {' nor '.join(WEIGHT_CHOICES)} nor a file"
                )
            return [path]
        if weights == "last" and average == 1:
            return [self.directory / LAST]
        candidates = self.best_paths() if weights == "best" else self.snapshot_paths()
        if len(candidates) < average:
            kind = "best checkpoints" if weights == "best" else "weight snapshots"
            setting = "trainer.keep_best" if weights == "best" else "trainer.keep_last"
            fix = f"average fewer, or train with {setting}>={average}"
            if not candidates:
                fix = "use weights=last, or train with validation and trainer.keep_best>=1"
                if weights == "last":
                    fix = f"use weights=last with average=1, or train with {setting}>={average}"
            raise NmtBucketError(
                f"average={average} with weights={weights} needs {average} {kind}, but "
                f"{self.directory} holds {len(candidates)}; {fix}"
            )
        return candidates[:average]

    def _matching(self, pattern: re.Pattern[str]) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in self.directory.iterdir() if pattern.fullmatch(p.name)]


def _update(path: Path, pattern: re.Pattern[str]) -> int:
    match = pattern.fullmatch(path.name)
    assert match is not None
    return int(match[1])
