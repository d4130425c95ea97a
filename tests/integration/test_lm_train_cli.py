"""nmtbucket-train on a tiny word-level language-model corpus written by the test: perplexity
falls in stream and sentence mode, every held-out token is scored, and a stream run resumed
mid-epoch (carried state included) equals one uninterrupted run."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from nmtbucket.training.checkpoint import load_checkpoint
from nmtbucket.training.metrics import read_metrics
from tests.integration.train_cli import read_results, run_cli

SUBJECTS = ("the cat", "a dog", "the big bird", "my friend")
VERBS = ("sees", "eats", "likes", "follows")
OBJECTS = ("the fish", "a ball", "the red apple", "some bread", "<unk>")


def write_tiny_text(root: Path) -> dict[str, int]:
    """Sentences of a toy grammar in ``root/tinylm/{train,valid,test}.txt``; returns each split's
    token count (words plus one <eos> per line)."""
    rng = random.Random(0)
    folder = root / "tinylm"
    folder.mkdir(parents=True)
    counts = {}
    for split, lines in (("train", 200), ("valid", 30), ("test", 30)):
        text = [
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
            for _ in range(lines)
        ]
        if split == "test":
            text[3] = "the zebra sees the cat"  # an unseen word becomes <unk>
        (folder / f"{split}.txt").write_text("".join(f" {t} \n" for t in text))
        counts[split] = sum(len(t.split()) + 1 for t in text)
    return counts


def lm_overrides(tmp_path: Path, experiment: str, run: str, **extra: Any) -> list[str]:
    settings: dict[str, Any] = {
        "+experiment": experiment,
        "data.root": tmp_path / "data",
        "data.dir": "tinylm",
        "data.lm.batch_size": 4,
        "data.lm.bptt": 6,
        "data.lm.eval_batch_size": 2,
        "model.d_model": 24,
        "model.layers": 1,
        "bucketing.token_budget": 60,
        "bucketing.max_keys": 3,
        "trainer.device": "cpu",
        "trainer.max_epochs": 3,
        "trainer.full_lr_epochs": 2,
        "trainer.log_every": 10,
        "trainer.progress": False,
        "trainer.tensorboard": False,
        "run_dir": tmp_path / run,
    }
    settings.update(extra)
    return [f"{key}={value}" for key, value in settings.items()]


@pytest.fixture
def counts(tmp_path: Path) -> dict[str, int]:
    return write_tiny_text(tmp_path / "data")


@pytest.mark.parametrize("experiment", ["ptb_small", "ptb_sentences"])
def test_a_tiny_language_model_learns_and_every_held_out_token_is_scored(
    tmp_path: Path, counts: dict[str, int], monkeypatch: pytest.MonkeyPatch, experiment: str
) -> None:
    one_update = {"trainer.max_updates": 1}  # a barely trained model, for comparison
    assert run_cli(monkeypatch, lm_overrides(tmp_path, experiment, "start", **one_update)) == 0
    start = read_results(tmp_path / "start")
    assert run_cli(monkeypatch, lm_overrides(tmp_path, experiment, "run")) == 0
    run = tmp_path / "run"
    results = read_results(run)
    assert results["test_perplexity"] < 0.5 * start["test_perplexity"]  # perplexity falls
    assert results["valid_perplexity"] < 0.5 * start["valid_perplexity"]
    vocabulary = (run / "vocab.txt").read_text().split()
    assert results["test_perplexity"] < len(vocabulary) / 2  # far better than uniform
    assert results["test_tokens"] == counts["test"] and results["valid_tokens"] == counts["valid"]
    assert results["epochs"] == 3 and results["mode"] in ("stream", "sentences")
    metrics = read_metrics(run)
    per_epoch = results["updates"] // 3
    validated = [r["update"] for r in metrics if r["kind"] == "valid"]
    assert validated == [per_epoch, 2 * per_epoch, 3 * per_epoch]  # after every epoch only
    rates = {(r["epoch"], r["lr"]) for r in metrics if r["kind"] == "train" and r["update"] > 1}
    # rates in force after the update logged: 1 through the 2nd epoch, halved in the 3rd
    assert {lr for _, lr in rates} == {1.0, 0.5}
    keys = json.loads((run / "buckets.json").read_text())
    if experiment == "ptb_small":
        assert keys == [[6, 4]] and results["padding_percent"] < 5  # one key: bptt, batch
    else:
        assert 1 < len(keys) <= 3 and all(len(row) == 2 for row in keys)  # 1-D keys
        assert results["padding_percent"] > 0


def test_a_stream_run_resumed_mid_epoch_equals_one_run(
    tmp_path: Path, counts: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 52 batches per epoch in windows of 3: the window of update 18 spans the epoch end, so
    # the epoch's validation (and save) must wait for it: a save at update 17 would record the
    # next epoch with batch 52 untrained
    fast = {"model.dropout": 0.3, "trainer.accumulate": 3}
    whole = lm_overrides(tmp_path, "ptb_small", "whole", **fast, **{"trainer.max_updates": 24})
    assert run_cli(monkeypatch, whole) == 0
    half = lm_overrides(tmp_path, "ptb_small", "halves", **fast, **{"trainer.max_updates": 12})
    assert run_cli(monkeypatch, half) == 0
    rest = lm_overrides(tmp_path, "ptb_small", "halves", **fast, **{"trainer.max_updates": 24})
    assert run_cli(monkeypatch, rest) == 0
    validated = [r["update"] for r in read_metrics(tmp_path / "whole") if r["kind"] == "valid"]
    assert validated == [18, 24]
    expected = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "halves" / "checkpoints" / "last.pt")
    assert resumed["iterator"]["position"] != 0  # the resume really was mid-epoch
    assert resumed["iterator"] == expected["iterator"]
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    for part in ("hidden", "cell"):
        assert torch.equal(expected["step"][part], resumed["step"][part])


def test_a_language_model_on_translation_data_is_refused(
    tmp_path: Path, counts: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = lm_overrides(tmp_path, "ptb_small", "bad", model="transformer_tiny")
    assert run_cli(monkeypatch, overrides) == 1
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_a_run_in_time_limited_pieces_goes_on_with_each_command(
    tmp_path: Path, counts: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    piece = {"trainer.max_minutes_per_run": 1e-6, "trainer.validate_each_epoch": False}
    overrides = lm_overrides(tmp_path, "ptb_small", "run", **piece)  # one update per command
    for updates in (1, 2):
        assert run_cli(monkeypatch, overrides) == 0
        results = read_results(tmp_path / "run")
        assert results["updates"] == updates
        assert results["stop_reason"].startswith("reached trainer.max_minutes_per_run")
