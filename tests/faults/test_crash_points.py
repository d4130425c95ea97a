"""A. Named crash points: the process SIGKILLs itself at a point where a crash could lose or
tear something (``NMTBUCKET_FAULT``, see ``nmtbucket/faults.py``), then the same command is
rerun until it finishes; the result must equal the uninterrupted reference run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.faults.harness import (
    compared_and_recorded,
    differences,
    overrides,
    train,
    train_until_done,
)

CRASHES = {
    "inside the atomic write of last.pt, before fsync": ["before_fsync@last.pt:2"],
    "before the rename of last.pt": ["before_rename@last.pt:3"],
    "between keeping previous.pt and renaming last.pt": ["between_renames@last.pt:2"],
    "before the directory fsync of last.pt": ["before_directory_fsync@last.pt:4"],
    "writing a best checkpoint": ["before_rename@best-00000006.pt:1"],
    "writing a weight snapshot": ["before_fsync@update-00000008.pt:1"],
    "between the best and the last saves": ["between_best_and_last:2"],
    "during pruning": ["pruning:1"],
    "during a metrics append": ["metrics_append:7"],
    "during the metrics rewrite of a resume": ["metrics_append:9", "before_rename@metrics.jsonl:1"],
    "during the sentencepiece copy": ["before_rename@src.spm.model:1"],
    "during the sentencepiece copy of a resume": [
        "before_rename@last.pt:2",
        "before_rename@tgt.spm.model:1",
    ],
    "writing config.json": ["before_rename@config.json:1"],
    "twice in a row in one save": ["before_fsync@last.pt:3", "between_renames@last.pt:1"],
}


@pytest.mark.parametrize("faults", CRASHES.values(), ids=CRASHES.keys())
def test_a_kill_at_a_named_point_loses_nothing(
    tmp_path: Path, corpus: Path, reference: Path, faults: list[str]
) -> None:
    argv = overrides(tmp_path, corpus)
    for fault in faults:  # each run dies at its point ...
        outcome = train(argv, tmp_path, env={"NMTBUCKET_FAULT": fault})
        assert outcome.exitcode == -signal.SIGKILL, f"{fault} not reached: {outcome.output[-2000:]}"
    train_until_done(argv, tmp_path)  # ... and the same command then finishes
    assert not compared_and_recorded(
        "A. kill at a named point", len(faults), tmp_path / "run", reference
    )


def test_the_comparison_sees_a_run_that_differs(
    tmp_path: Path, corpus: Path, reference: Path
) -> None:
    """The check above can fail: a run one update short, or with other dropout masks, is seen."""
    assert train(overrides(tmp_path, corpus, **{"trainer.seed": 2}), tmp_path).exitcode == 0
    lost = differences(tmp_path / "run", reference)
    assert any(d.startswith("last.pt.model") for d in lost)
    assert any("rng" in d for d in lost)
