"""The shipped experiments on the real corpora and the demo at full scale (slow).

The Multi30k experiments run a few updates each, to show that they build and train on the real
data; the demo must reach its quality target (>= 90 test BLEU), as in the README."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.train_cli import read_results, run_cli

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("NMTBUCKET_DATA_ROOT", ROOT.parent / "shared" / "data"))
MULTI30K = [f"multi30k_{arch}{size}" for arch in ("transformer", "lstm") for size in ("", "_cpu")]


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "multi30k").is_dir(), reason=f"no corpora under {DATA}")
@pytest.mark.parametrize("experiment", MULTI30K)
def test_multi30k_experiment_trains_on_real_data(
    experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = [
        f"+experiment={experiment}",
        f"data.root={DATA}",
        f"run_dir={tmp_path / 'run'}",
        "trainer.device=cpu",
        "trainer.max_updates=3",
        "trainer.validate_bleu=false",
        "trainer.early_stopping_metric=loss",
        "trainer.progress=false",
        "search.max_output_len=8",  # an untrained model never stops on its own
    ]
    assert run_cli(monkeypatch, overrides) == 0
    results = read_results(tmp_path / "run")
    assert results["updates"] == 3 and results["test_split"] == "test2016"
    assert results["padding_percent"] < 10


@pytest.mark.slow
def test_demo_reaches_90_bleu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = ["+experiment=demo", f"run_dir={tmp_path / 'run'}", "trainer.progress=false"]
    overrides.append("trainer.max_minutes=0")  # the quality target, not this machine's speed
    overrides.append(f"data.cache_dir={tmp_path / 'cache'}")
    assert run_cli(monkeypatch, overrides) == 0
    assert read_results(tmp_path / "run")["test_bleu"] >= 90


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "ptb").is_dir(), reason=f"no corpora under {DATA}")
@pytest.mark.parametrize("experiment", ["ptb_small", "ptb_medium", "ptb_large", "ptb_sentences"])
def test_ptb_experiment_trains_and_scores_every_token(
    experiment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = experiment in ("ptb_small", "ptb_sentences")
    overrides = [
        f"+experiment={experiment}",
        f"data.root={DATA}",
        f"run_dir={tmp_path / 'run'}",
        "trainer.device=cpu",
        f"trainer.max_updates={300 if small else 2}",
        "trainer.progress=false",
    ]
    if not small:  # the GPU-sized models: only that they build, train and score
        overrides.append("data.lm.eval_batch_size=20")
    assert run_cli(monkeypatch, overrides) == 0
    results = read_results(tmp_path / "run")
    assert results["valid_tokens"] == 73760 and results["test_tokens"] == 82430  # README counts
    if small:  # 300 updates take a 10000-word vocabulary far below uniform
        assert results["test_perplexity"] < 1000
