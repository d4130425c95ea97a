"""scripts/gpu_check.sh: its dry run on the CPU (tiny sizes, no GPU parts), so that the check a
lent GPU runs keeps working; and scripts/compare_weights.py, which its parity stages use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nmtbucket.training.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
PARITY = ("transformer", "lstm", "lm_stream")


def test_the_dry_run_runs_every_stage_it_can_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = ["bash", "scripts/gpu_check.sh", "--dry-run", "--budget", "3000", "--scratch",
               str(tmp_path), str(out)]  # fmt: skip
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    statuses = {name: stage["status"] for name, stage in summary["stages"].items()}
    assert statuses == {
        "pytest_gpu": "ok",
        "bench_executors": "ok",
        "bench_compile": "skipped",
        **{f"parity_{name}": "ok" for name in PARITY},
    }
    assert summary["stages"]["pytest_gpu"]["result"]["tests"] >= 10  # the GPU tests collected
    speeds = summary["stages"]["bench_executors"]["result"]["tgt_tokens_per_second"]
    assert set(speeds) == {"eager", "eager_sync", "pad_to_max"} and min(speeds.values()) > 0
    for name in PARITY:
        parity = summary["stages"][f"parity_{name}"]["result"]
        assert parity["agree"] and parity["tensors"] > 0 and parity["updates"] == 3
        assert summary["targets"][f"parity_{name}_agree"]["met"] is True
    assert summary["targets"]["cuda_graph_over_eager"]["met"] is None  # not measured on a CPU
    assert summary["environment"]["torch"] == torch.__version__
    assert sorted(p.name for p in out.iterdir()) == [
        "bench-executors.json", "log.txt", "summary.json", "summary.md",
    ]  # fmt: skip
    log = (out / "log.txt").read_text(encoding="utf-8")
    assert "== parity_lm_stream: ok" in log and "| bench_compile | skipped |" in log


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the check would run")
def test_without_a_gpu_or_dry_run_the_check_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "scripts/gpu_check.py", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "no CUDA device" in done.stderr


def test_compare_weights_finds_the_tensors_that_differ(tmp_path: Path) -> None:
    weights = {"a.weight": torch.ones(3, 4), "b.bias": torch.zeros(4)}
    save_checkpoint(tmp_path / "one.pt", {"model": weights})
    nudged = {"a.weight": torch.ones(3, 4), "b.bias": torch.tensor([0.0, 0.0, 0.0, 0.01])}
    save_checkpoint(tmp_path / "two.pt", {"model": nudged})

    def compare(a: str, b: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "scripts/compare_weights.py", str(tmp_path / a), str(tmp_path / b),
             "--json", str(tmp_path / "report.json")],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip

    assert compare("one.pt", "one.pt").returncode == 0
    assert json.loads((tmp_path / "report.json").read_text())["max_abs_diff"] == 0
    differ = compare("two.pt", "one.pt")
    assert differ.returncode == 1 and "DIFFER" in differ.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["elements_outside"] == 1 and report["worst"][0]["name"] == "b.bias"
    assert report["max_abs_diff"] == (report["worst"][0]["max_abs_diff"]) > 0.009
    missing = compare("none.pt", "one.pt")
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr
