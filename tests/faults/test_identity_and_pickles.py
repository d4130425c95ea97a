"""G. Data identity: a resumed run refuses training data edited in place and a rebuilt
sentencepiece model, naming what changed, and overwrites nothing. I. Pickle safety: a
checkpoint or cached array whose pickle would run code is refused everywhere, and the code
never runs."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import torch

from nmtbucket.data.tokenizer import train_sentencepiece
from nmtbucket.errors import NmtBucketError
from nmtbucket.training.checkpoint import CheckpointError, load_checkpoint
from nmtbucket.translation.translator import Translator
from tests.faults.harness import LEDGER, compared_and_recorded, overrides, train, train_until_done


def _interrupted(tmp_path: Path, corpus: Path) -> list[str]:
    argv = overrides(tmp_path, corpus)
    outcome = train(argv, tmp_path, env={"NMTBUCKET_FAULT": "before_fsync@last.pt:4"})
    assert outcome.exitcode == -signal.SIGKILL, outcome.output[-2000:]
    return argv


def _refused(outcome_output: str, exitcode: int, *named: str) -> None:
    assert exitcode == 1, outcome_output[-3000:]
    assert "Traceback" not in outcome_output
    message = outcome_output.split("nmtbucket-train: error: ")[-1]
    for name in (*named, "changed since the run started", "new run"):
        assert name in message, message


def test_g_an_edited_training_line_is_refused_on_resume(tmp_path: Path, corpus: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(corpus, data)
    argv = _interrupted(tmp_path, data)
    spm_copy = (tmp_path / "run" / "src.spm.model").read_bytes()
    source = data / "tiny" / "train.en"
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[5] = "the cat sees a dog\n" if lines[5] != "the cat sees a dog\n" else "a dog\n"
    source.write_text("".join(lines), encoding="utf-8")
    outcome = train(argv, tmp_path)
    _refused(outcome.output, outcome.exitcode, f"training source file {source}")
    assert (tmp_path / "run" / "src.spm.model").read_bytes() == spm_copy  # nothing overwritten
    LEDGER.record("G. changed data on resume, refused", 1, survived=True, lost=0)


def test_g_a_rebuilt_sentencepiece_model_is_refused_on_resume(
    tmp_path: Path, corpus: Path, reference: Path
) -> None:
    argv = _interrupted(tmp_path, corpus)
    (cached,) = (tmp_path / "cache" / "sentencepiece").glob("spm-*.model")
    original = cached.read_bytes()
    other = train_sentencepiece(sorted((corpus / "tiny").glob("train.*")), tmp_path / "other", 41)
    cached.write_bytes(other.model_path.read_bytes())  # rebuilt with other settings
    outcome = train(argv, tmp_path)
    _refused(outcome.output, outcome.exitcode, "sentencepiece model", str(cached))
    cached.write_bytes(original)  # the fix the message gives: restore it
    train_until_done(argv, tmp_path)
    assert not compared_and_recorded(
        "G. changed data on resume, refused", 1, tmp_path / "run", reference
    )


class _RunsCode:
    """Unpickling this creates the file ``marker``: code a loader must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _poison(path: Path, marker: Path, entry: str) -> None:
    """Rewrite the checkpoint at ``path`` with ``entry`` replaced by a code-running pickle."""
    state = torch.load(path, weights_only=True)
    state[entry] = {"payload": _RunsCode(marker)}
    torch.save(state, path)


def test_i_code_in_a_checkpoint_or_cached_array_never_runs(
    tmp_path: Path, corpus: Path, reference: Path, tiny_run: Path
) -> None:
    marker = tmp_path / "code-ran"
    argv = _interrupted(tmp_path, corpus)
    checkpoints = tmp_path / "run" / "checkpoints"
    for name, entry in (("last.pt", "optimizer"), ("previous.pt", "rng")):
        _poison(checkpoints / name, marker, entry)
    outcome = train(argv, tmp_path)  # neither training state loads: a clear error
    assert outcome.exitcode == 1 and "Delete both" in outcome.output, outcome.output[-3000:]
    injected = 2

    (arrays,) = (tmp_path / "cache" / "encoded").glob("*.pt")
    _poison(arrays, marker, "train")
    for name in ("last.pt", "previous.pt"):
        (checkpoints / name).unlink()
    assert train(argv, tmp_path).exitcode == 0  # the cache is encoded again
    injected += 1

    folder = tmp_path / "translate"
    shutil.copytree(tiny_run, folder)
    best = sorted((folder / "checkpoints").glob("best-*.pt"))[0]
    _poison(best, marker, "model")
    with pytest.raises(NmtBucketError):
        Translator.from_checkpoint(folder, weights="best", average=2, device="cpu")
    with pytest.raises(NmtBucketError):
        Translator.from_checkpoint(folder, weights=str(best), device="cpu")
    with pytest.raises(CheckpointError):
        load_checkpoint(best)
    injected += 3
    LEDGER.record("I. code in a pickle", injected, not marker.exists(), lost=int(marker.exists()))
    assert not marker.exists()
