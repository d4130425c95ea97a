"""Fixtures of the fault-injection suite: the toy corpus and the uninterrupted reference run
(once per session), a fresh folder per scenario, and the suite's report: with
``NMTBUCKET_FAULT_REPORT=FOLDER`` the ledger is written there as ``summary.md`` and
``summary.json`` when the session ends."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.faults.harness import LEDGER, overrides, train
from tests.integration.train_cli import write_tiny_corpus

_STARTED = time.monotonic()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy corpus every scenario reads (read-only: a test that edits data copies it)."""
    root = tmp_path_factory.mktemp("fault_corpus")
    write_tiny_corpus(root)
    return root


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """The run folder of the uninterrupted reference run."""
    root = tmp_path_factory.mktemp("fault_reference")
    outcome = train(overrides(root, corpus), root)
    assert outcome.exitcode == 0, outcome.output[-3000:]
    (root / "seconds.txt").write_text(f"{outcome.seconds}\n")
    return root / "run"


@pytest.fixture(scope="session")
def reference_seconds(reference: Path) -> float:
    """How long the reference run took in a child, start to exit: where random kills land."""
    return float((reference.parent / "seconds.txt").read_text())


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = os.environ.get("NMTBUCKET_FAULT_REPORT")
    if folder and LEDGER.rows:
        LEDGER.write(Path(folder), time.monotonic() - _STARTED)
