"""``nmtbucket-train`` under torchrun (two CPU ranks, gloo) on the tiny corpus: one writer, and a
resumed two-rank run that equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from nmtbucket.training.checkpoint import load_checkpoint
from tests.integration.train_cli import tiny_overrides, write_tiny_corpus

REPO = Path(__file__).resolve().parents[2]


def _torchrun(tmp_path: Path, run: str, **settings: object) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node 2 -m nmtbucket.cli.train`` on the tiny corpus."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "nmtbucket.cli.train"]
    command += tiny_overrides(tmp_path, run, **settings)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_rank_0_alone_writes_the_run_folder(tmp_path: Path) -> None:
    write_tiny_corpus(tmp_path / "data")
    _torchrun(tmp_path, "run", **{"trainer.max_updates": 4, "trainer.validate_every": 2})
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [(row["kind"], row["update"]) for row in rows]
    assert len(logged) == len(set(logged))  # one writer: no row twice
    assert ("valid", 2) in logged and ("train", 4) in logged and ("valid", 4) in logged
    log_lines = (run / "train.log").read_text().splitlines()
    assert sum("validation at update 2" in line for line in log_lines) == 1
    results = json.loads((run / "results.json").read_text())
    assert results["updates"] == 4 and "test_bleu" in results
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iterator"]["world_size"] == 2


def test_a_resumed_two_rank_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    write_tiny_corpus(tmp_path / "data")
    settings = {"trainer.validate_every": 2, "model.dropout": 0.3}  # per-rank random state
    _torchrun(tmp_path, "whole", **settings, **{"trainer.max_updates": 6})
    _torchrun(tmp_path, "pieces", **settings, **{"trainer.max_updates": 3})
    _torchrun(tmp_path, "pieces", **settings, **{"trainer.max_updates": 6})
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    pieces = load_checkpoint(tmp_path / "pieces" / "checkpoints" / "last.pt")
    assert whole["progress"]["updates"] == pieces["progress"]["updates"] == 6
    for name, tensor in whole["model"].items():
        assert torch.equal(tensor, pieces["model"][name]), name
