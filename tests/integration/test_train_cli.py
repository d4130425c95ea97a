"""nmtbucket-train end to end on tiny data: outputs, exact resume, NaN handling, bad input."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

import nmtbucket.translation.step
from nmtbucket.training.checkpoint import load_checkpoint
from nmtbucket.training.evaluation import SplitScores
from nmtbucket.training.loss import LossTerms
from nmtbucket.training.metrics import read_metrics
from tests.integration.train_cli import read_results, run_cli, tiny_overrides, write_tiny_corpus


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path / "data")


def test_a_run_writes_results_metrics_checkpoints_and_translations(
    tmp_path: Path,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    snapshots = {"trainer.save_every": 1, "trainer.keep_last": 2}
    settings = {"trainer.keep_best": 1, "trainer.plot_buckets": True, **snapshots}
    overrides = tiny_overrides(tmp_path, **settings)
    assert run_cli(monkeypatch, overrides) == 0
    run = tmp_path / "run"
    results = read_results(run)
    assert results["updates"] == 4
    assert results["stop_reason"] == "reached trainer.max_updates=4"
    assert 0 <= results["test_bleu"] <= 100 and 0 <= results["test_chrf"] <= 100
    assert "nrefs:1" in results["bleu_signature"] and "nc:6" in results["chrf_signature"]
    assert 0 < results["padding_percent"] < 100
    assert results["real_tgt_tokens_per_second"] > 0
    assert math.isfinite(results["test_perplexity"])

    rows = read_metrics(run)
    assert [r["update"] for r in rows if r["kind"] == "valid"] == [2, 4]
    assert [r["update"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    kept = {
        "last.pt",
        "previous.pt",
        results["test_weights"],
        "update-00000003.pt",
        "update-00000004.pt",
    }
    assert {p.name for p in (run / "checkpoints").iterdir()} == kept
    if importlib.util.find_spec("matplotlib") is not None:  # the test extra installs it
        assert (run / "buckets.png").read_bytes()[:4] == b"\x89PNG"
    test_lines = (corpus / "test.en").read_text().splitlines()
    hypotheses = (run / "test.hyp.txt").read_text().split("\n")[:-1]
    assert len(hypotheses) == len(test_lines)  # the empty and the over-long line are kept
    assert {"config.json", "buckets.json", "src.spm.model", "tgt.spm.model"} <= {
        p.name for p in run.iterdir()
    }
    assert "test (test, best-" in capsys.readouterr().out


def test_resume_gives_the_same_parameters_as_one_run(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = {"trainer.validate_every": 0, "trainer.validate_bleu": False}
    fast |= {"trainer.early_stopping_metric": "loss", "trainer.accumulate": 2}
    fast |= {"model.dropout": 0.3}  # the resumed run must restore the random state too
    whole = tiny_overrides(tmp_path, "whole", **fast, **{"trainer.max_updates": 6})
    assert run_cli(monkeypatch, whole) == 0
    first_half = tiny_overrides(tmp_path, "halves", **fast, **{"trainer.max_updates": 3})
    assert run_cli(monkeypatch, first_half) == 0
    second_half = tiny_overrides(tmp_path, "halves", **fast, **{"trainer.max_updates": 6})
    assert run_cli(monkeypatch, second_half) == 0

    expected = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "halves" / "checkpoints" / "last.pt")
    assert resumed["progress"]["updates"] == expected["progress"]["updates"] == 6
    assert expected["model"].keys() == resumed["model"].keys()
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    assert resumed["iterator"] == expected["iterator"]
    assert resumed["scheduler"] == expected["scheduler"]
    logged = [r["update"] for r in read_metrics(tmp_path / "halves") if r["kind"] == "train"]
    assert logged == [1, 2, 3, 4, 5, 6]
    want_state, got_state = expected["optimizer"]["state"], resumed["optimizer"]["state"]
    assert want_state.keys() == got_state.keys()
    for want, got in zip(want_state.values(), got_state.values(), strict=True):
        assert torch.equal(want["exp_avg"], got["exp_avg"])
        assert torch.equal(want["exp_avg_sq"], got["exp_avg_sq"])


def _loss_with_nan_at(batches: set[int]) -> object:
    real = nmtbucket.translation.step.label_smoothed_cross_entropy
    calls = {"n": 0}

    def loss(*args: object, **kwargs: object) -> LossTerms:
        terms = real(*args, **kwargs)  # type: ignore[arg-type]
        calls["n"] += 1
        if calls["n"] in batches:
            return LossTerms(terms.loss_sum * float("nan"), terms.nll_sum, terms.num_tokens)
        return terms

    return loss


def test_a_nan_loss_skips_its_update_and_is_counted(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        nmtbucket.translation.step, "label_smoothed_cross_entropy", _loss_with_nan_at({2})
    )
    assert run_cli(monkeypatch, tiny_overrides(tmp_path)) == 0
    results = read_results(tmp_path / "run")
    assert results["nonfinite_updates"] == 1
    assert results["updates"] == 4  # the skipped one included: the loop never waits to know
    train_rows = [row for row in read_metrics(tmp_path / "run") if row["kind"] == "train"]
    finite = [math.isfinite(float(row["train_loss"])) for row in train_rows]
    assert finite == [True, False, True, True]  # update 2 alone (log_every=1), made no loss
    norms = [math.isfinite(float(row["max_grad_norm"])) for row in train_rows]
    assert norms == finite  # the NaN loss made a NaN gradient
    assert [row["nonfinite_updates"] for row in train_rows] == [0, 1, 1, 1]


# log_every=1 reads the tally at every update; with 8 the run of NaNs is seen at the next read
@pytest.mark.parametrize(("log_every", "seen_at"), [(1, 5), (8, 8)])
def test_nan_losses_in_a_row_stop_the_run_at_the_next_tally_read(
    tmp_path: Path,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    log_every: int,
    seen_at: int,
) -> None:
    monkeypatch.setattr(
        nmtbucket.translation.step, "label_smoothed_cross_entropy", _loss_with_nan_at({3, 4, 5})
    )
    settings = {
        "trainer.max_bad_updates": 3,
        "trainer.max_updates": 20,
        "trainer.log_every": log_every,
        "trainer.validate_every": 0,
    }
    assert run_cli(monkeypatch, tiny_overrides(tmp_path, **settings)) == 1
    err = capsys.readouterr().err
    assert f"3 updates in a row had a non-finite loss or gradient (seen at update {seen_at})" in err
    assert "trainer.max_bad_updates=3" in err


def test_a_nan_validation_score_is_never_the_best(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nan_first = iter([math.nan])  # the first validation's score is NaN, the next ones are real
    real_metric = SplitScores.metric
    monkeypatch.setattr(
        SplitScores, "metric", lambda self, name: next(nan_first, real_metric(self, name))
    )
    overrides = tiny_overrides(tmp_path, **{"trainer.early_stopping_metric": "loss"})
    assert run_cli(monkeypatch, overrides) == 0
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert math.isfinite(state["progress"]["best_score"])
    assert [entry[1] for entry in state["keeper"]["best"]] == [4]  # update 2 was NaN
    valid = [row for row in read_metrics(tmp_path / "run") if row["kind"] == "valid"]
    assert [row["best"] for row in valid] == [False, True]


def test_missing_data_root_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NMTBUCKET_DATA_ROOT", raising=False)
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("data.root=")]
    assert run_cli(monkeypatch, overrides) == 1
    err = capsys.readouterr().err
    assert "NMTBUCKET_DATA_ROOT" in err and "data.root" in err


def test_mismatched_corpus_names_both_files(
    tmp_path: Path,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with (corpus / "train.de").open("a") as file:
        file.write("one more line\n")
    assert run_cli(monkeypatch, tiny_overrides(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "train.en" in err and "train.de" in err and "60" in err and "61" in err


def test_resume_false_refuses_to_overwrite_a_run(
    tmp_path: Path,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli(monkeypatch, tiny_overrides(tmp_path, **{"trainer.max_updates": 1})) == 0
    assert run_cli(monkeypatch, [*tiny_overrides(tmp_path), "resume=false"]) == 1
    assert "already holds a training run and resume=false" in capsys.readouterr().err


@pytest.mark.parametrize("input_feeding", [True, False])
def test_the_lstm_trains_through_the_cli(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch, input_feeding: bool
) -> None:
    lstm = {"model": "lstm", "model.d_model": 16, "model.input_feeding": input_feeding}
    overrides = tiny_overrides(tmp_path, **lstm, **{"model.attention": "dot"})
    assert run_cli(monkeypatch, overrides) == 0
    results = read_results(tmp_path / "run")
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"arch": "lstm"' in config
    assert results["updates"] == 4 and math.isfinite(results["test_loss"])


def test_resume_refuses_another_model_or_data(
    tmp_path: Path,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli(monkeypatch, tiny_overrides(tmp_path, **{"trainer.max_updates": 1})) == 0
    assert run_cli(monkeypatch, tiny_overrides(tmp_path, **{"model.d_model": 32})) == 1
    err = capsys.readouterr().err
    assert "cannot resume" in err and "model.d_model (16 -> 32)" in err


def test_patience_stops_a_run_that_no_longer_improves(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = {"trainer.lr": 0.0, "trainer.validate_every": 1, "trainer.patience": 2}
    frozen |= {"trainer.early_stopping_metric": "loss", "trainer.validate_bleu": False}
    frozen |= {"trainer.max_updates": 20}
    assert run_cli(monkeypatch, tiny_overrides(tmp_path, **frozen)) == 0
    results = read_results(tmp_path / "run")
    # Update 1 sets the best loss; with a zero rate updates 2 and 3 cannot beat it.
    assert results["updates"] == 3
    assert results["stop_reason"] == "early stopping: loss did not improve in 2 validations"


def test_max_epochs_stops_after_whole_epochs(
    tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = tiny_overrides(tmp_path, **{"trainer.max_updates": 0, "trainer.max_epochs": 2})
    assert run_cli(monkeypatch, overrides) == 0
    results = read_results(tmp_path / "run")
    assert results["stop_reason"] == "reached trainer.max_epochs=2"
    assert results["epochs"] == 2.0
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    per_epoch = results["updates"] // 2
    position = state["iterator"]["epoch"] * per_epoch + state["iterator"]["position"]
    assert per_epoch > 1 and position == 2 * per_epoch  # saved at the end of the second epoch


def test_a_multirun_sweep_trains_each_job_in_its_own_folder_on_one_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-m trainer.lr=...,...`` on the demo task, made tiny: job N trains in run_dir/N."""
    overrides = [
        "-m", "+experiment=demo", f"run_dir={tmp_path / 'sweep'}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.synthetic.num_train=200",
        "data.synthetic.num_valid=8", "data.synthetic.num_test=8", "trainer.max_updates=2",
        "trainer.validate_every=0", "trainer.progress=false", "trainer.tensorboard=false",
        "trainer.lr=1e-3,3e-3",
    ]  # fmt: skip
    assert run_cli(monkeypatch, overrides) == 0
    for job, lr in (("0", 1e-3), ("1", 3e-3)):
        run = tmp_path / "sweep" / job
        config = json.loads((run / "config.json").read_text())
        assert config["run_dir"] == str(run) and config["trainer"]["lr"] == lr
        assert read_results(run)["updates"] == 2
        assert (run / "checkpoints" / "last.pt").is_file()
    assert len(list((tmp_path / "cache" / "encoded").iterdir())) == 1  # one shared cache
