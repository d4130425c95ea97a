"""The save benchmark on a small training state (the file written by the test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from nmtbucket.training.checkpoint import STATE_FORMAT, save_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_save.py"


def test_bench_save_times_both_saves_side_by_side(tmp_path: Path) -> None:
    state = tmp_path / "last.pt"
    save_checkpoint(state, {"format": STATE_FORMAT, "model": {"w": torch.randn(256, 256)}})
    corpus = tmp_path / "train.en"
    corpus.write_text("a line\n" * 100)
    out = tmp_path / "save.json"
    command = [
        sys.executable, str(SCRIPT), str(state), "--repeats", "3", "--hash-files", str(corpus),
        "--directory", str(tmp_path), "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    assert "now / before:" in result.stdout
    results = json.loads(out.read_text())
    assert all(len(times) == 3 for times in results["seconds"].values())
    assert results["state_bytes"] > 256 * 256 * 4
    assert results["hashing_at_start"][0]["bytes"] == corpus.stat().st_size
