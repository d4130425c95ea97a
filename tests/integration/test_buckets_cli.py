"""``nmtbucket-buckets`` on the tiny corpus: the table, the picture in the run folder (or how to
get it), --help, and a clear error for a language model in stream mode; training draws the
same picture."""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

import pytest

import nmtbucket.cli.buckets
from tests.integration.train_cli import run_cli, tiny_overrides, write_tiny_corpus


def _run(monkeypatch: pytest.MonkeyPatch, overrides: list[str]) -> int:
    return run_cli(monkeypatch, overrides, nmtbucket.cli.buckets.entry)


def test_the_plan_of_a_translation_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tiny_corpus(tmp_path / "data")
    assert _run(monkeypatch, tiny_overrides(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "60 training examples" in out
    assert (
        "| key | batch size | examples | batches | padded tokens | real tokens | padding % |" in out
    )
    assert "| random |" in out and "| sorted |" in out
    run = tmp_path / "run"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "pip install 'nmtbucket[plot]'" in out
    else:
        assert (run / "buckets.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in run.iterdir()) in (["buckets.png"], [])  # nothing else


def test_help_and_a_stream_language_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(monkeypatch, ["--help"]) == 0
    assert "usage: nmtbucket-buckets" in capsys.readouterr().out
    overrides = ["+experiment=ptb_small", f"data.root={tmp_path}", f"run_dir={tmp_path / 'run'}"]
    assert _run(monkeypatch, overrides) == 1
    assert "data.lm.mode=sentences" in capsys.readouterr().err


def test_the_console_script_is_installed() -> None:
    script = Path(sysconfig.get_path("scripts")) / "nmtbucket-buckets"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "usage: nmtbucket-buckets" in result.stdout
