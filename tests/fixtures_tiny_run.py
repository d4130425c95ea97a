"""A tiny trained run directory, made once per test session, for the translation tests (a
fixture registered in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.train_cli import run_cli, tiny_overrides, write_tiny_corpus


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 6 updates with 2 best checkpoints and 3 weight snapshots (for averaging)."""
    root = tmp_path_factory.mktemp("tiny_run")
    write_tiny_corpus(root / "data")
    overrides = tiny_overrides(
        root,
        **{
            "trainer.max_updates": 6,
            "trainer.keep_best": 2,
            "trainer.save_every": 1,
            "trainer.keep_last": 3,
            "trainer.lr": 3e-3,
        },
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert run_cli(monkeypatch, overrides) == 0
    return root / "run"
