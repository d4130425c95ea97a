"""The run directory: what it records, and which older runs it resumes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nmtbucket.bucketing.keys import LengthPair
from nmtbucket.config import DataConfig, ModelConfig, TrainConfig
from nmtbucket.errors import NmtBucketError
from nmtbucket.training.run_directory import open_run_dir, write_run_files


def _language_model_config(run_dir: Path, layers: int) -> TrainConfig:
    return TrainConfig(
        run_dir=str(run_dir),
        resume=True,
        data=DataConfig(task="lm"),
        model=ModelConfig(arch="lstm_lm", d_model=8, layers=layers),
    )


def _write_run_before_model_layers(run_dir: Path, decoder_layers: int) -> None:
    """A language-model run as nmtbucket wrote it before ``model.layers``: its depth was
    ``model.decoder_layers``."""
    config = dataclasses.asdict(_language_model_config(run_dir, layers=2))
    del config["model"]["layers"]
    config["model"]["decoder_layers"] = decoder_layers
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"")
    (run_dir / "config.json").write_text(json.dumps(config))


def test_a_language_model_run_from_before_model_layers_resumes_with_its_depth(
    tmp_path: Path,
) -> None:
    _write_run_before_model_layers(tmp_path, decoder_layers=3)
    assert open_run_dir(_language_model_config(tmp_path, layers=3)) == tmp_path
    with pytest.raises(NmtBucketError, match=r"model\.layers \(3 -> 2\)"):
        open_run_dir(_language_model_config(tmp_path, layers=2))


def test_run_files_record_the_config_and_every_key_with_its_rows(tmp_path: Path) -> None:
    config = TrainConfig(run_dir=str(tmp_path))
    write_run_files(tmp_path, config, {LengthPair(4, 5): 8, LengthPair(9, 9): 2})
    assert json.loads((tmp_path / "buckets.json").read_text()) == [[4, 5, 8], [9, 9, 2]]
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == json.loads(json.dumps(dataclasses.asdict(config)))


def test_a_resume_refuses_another_optimizer_and_says_which_settings_do_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _language_model_config(tmp_path, layers=2)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "previous.pt").write_bytes(b"")  # a state to resume
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    changed = dataclasses.replace(
        config, trainer=dataclasses.replace(config.trainer, optimizer="sgd")
    )
    with pytest.raises(NmtBucketError, match=r"trainer\.optimizer \('adamw' -> 'sgd'\)"):
        open_run_dir(changed)
    changed = dataclasses.replace(
        config, trainer=dataclasses.replace(config.trainer, lr=1.0, max_updates=9)
    )
    with caplog.at_level("WARNING"):
        open_run_dir(changed)
    assert "trainer.max_updates (0 -> 9): these take effect" in caplog.text
    assert "trainer.lr (0.0005 -> 1.0): no effect" in caplog.text
