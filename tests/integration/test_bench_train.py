"""The executor benchmark on the embedded demo task (eager and pad-to-max on the CPU; compile
and cuda_graph are measured on a GPU, see bench/results/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_train.py"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, str(SCRIPT), "+experiment=demo", "bucketing.max_keys=4",
        "trainer.device=cpu", f"data.cache_dir={tmp_path / 'cache'}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_bench_train_compares_bucketed_eager_with_pad_to_max(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = _run(tmp_path, "--variants", "eager", "pad_to_max", "eager_sync", "--rounds", "2",
                  "--steps", "3", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| eager |" in result.stdout and "eager_over_pad_to_max" in result.stdout
    report = json.loads(out.read_text())
    eager, padded = report["results"]["eager"], report["results"]["pad_to_max"]
    assert report["results"]["eager_sync"]["updates_made"] == 6
    assert "eager_over_eager_sync" in report["ratios"]
    assert len(eager["tgt_tokens_per_second_rounds"]) == 2
    assert padded["padding_percent"] > eager["padding_percent"] > 0
    assert eager["updates_made"] == eager["steps"] == 6
    assert report["device"] == "cpu" and report["bucket_keys"] == 4
    assert report["graph_memory"] is None


def test_bench_train_refuses_cuda_graphs_without_cuda(tmp_path: Path) -> None:
    result = _run(tmp_path, "--variants", "cuda_graph")
    assert result.returncode != 0
    assert "needs a CUDA device" in result.stderr
