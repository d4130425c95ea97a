"""Runs ``nmtbucket-train`` in-process on tiny parallel data written by the test."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nmtbucket.cli.train

WORDS = ("the", "a", "cat", "dog", "sees", "eats", "runs", "big", "small", "red", "green")


def write_tiny_corpus(root: Path, train_lines: int = 60) -> Path:
    """A toy en->de corpus: each target word is the source word reversed, so it is learnable.
    The test split holds an empty line and one longer than any training line."""
    import random

    rng = random.Random(0)
    folder = root / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": train_lines, "valid": 8, "test": 6}
    for split, count in sizes.items():
        src = [" ".join(rng.choices(WORDS, k=rng.randint(1, 6))) for _ in range(count)]
        if split == "test":
            src[2] = ""
            src[4] = " ".join(WORDS * 2)
        tgt = [" ".join(w[::-1] for w in line.split()) for line in src]
        (folder / f"{split}.en").write_text("".join(s + "\n" for s in src), encoding="utf-8")
        (folder / f"{split}.de").write_text("".join(t + "\n" for t in tgt), encoding="utf-8")
    return folder


def tiny_overrides(tmp_path: Path, run: str = "run", **extra: Any) -> list[str]:
    """Overrides for a model and run that take a few seconds on a CPU."""
    settings: dict[str, Any] = {
        "data.root": tmp_path / "data",
        "data.dir": "tiny",
        "data.src_lang": "en",
        "data.tgt_lang": "de",
        "data.train": "train",
        "data.valid": "valid",
        "data.test": "test",
        "data.cache_dir": tmp_path / "cache",
        "data.tokenizer.vocab_size": 40,
        "model": "transformer_tiny",
        "model.d_model": 16,
        "model.d_ff": 32,
        "model.num_heads": 2,
        "model.encoder_layers": 1,
        "model.decoder_layers": 1,
        "bucketing.max_keys": 4,
        "bucketing.token_budget": 160,
        "trainer.device": "cpu",
        "trainer.max_updates": 4,
        "trainer.warmup_updates": 2,
        "trainer.validate_every": 2,
        "trainer.log_every": 1,
        "trainer.progress": False,
        "trainer.tensorboard": False,
        "trainer.plot_buckets": False,  # its own test draws it
        "search.max_output_len": 20,
        "name": "tiny",
        "run_dir": tmp_path / run,
    }
    settings.update(extra)
    return [f"{key}={value}" for key, value in settings.items()]


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    overrides: list[str],
    entry: Callable[[], object] = nmtbucket.cli.train.main,
) -> int:
    """Run a console script's entry point (``nmtbucket-train``'s unless given) with
    ``overrides``; its exit status."""
    monkeypatch.setattr(sys, "argv", ["nmtbucket", *overrides])
    try:
        entry()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def read_results(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "results.json").read_text()))
