"""The revision comparison: its one-harness step benchmark runs, and its summary pairs the runs
of each side and computes the ratios from what the benchmarks wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_public_step_benchmark_runs_on_the_demo_task(tmp_path: Path) -> None:
    command = [
        sys.executable, str(ROOT / "scripts" / "bench_public_step.py"),
        "--cache-dir", str(tmp_path / "cache"), "--rounds", "1", "--steps", "2",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nmtbucket/__init__.py: median" in result.stdout


def _train_report(rate: float) -> dict:
    return {"results": {"eager": {"tgt_tokens_per_second": rate}}}


def test_the_summary_pairs_runs_and_gives_ratios(tmp_path: Path) -> None:
    for side, rates, sentences in (("before", [100, 300, 200], 10.0), ("after", [110, 270], 12.5)):
        (tmp_path / f"{side}.commit").write_text(f"{side}0123456789\n")
        for pair, rate in enumerate(rates, start=1):
            report = _train_report(rate)
            (tmp_path / f"bench_train_{side}_{pair}.json").write_text(json.dumps(report))
        rows = [{"beam_size": 5, "sentences_per_second": sentences}]
        (tmp_path / f"bench_translate_{side}_1.json").write_text(json.dumps({"rows": rows}))
        log = f"/x/nmtbucket/__init__.py: median {rates[0] * 2} target tokens/s\n"
        (tmp_path / f"bench_public_step_{side}_1.log").write_text(log)
    script = ROOT / "scripts" / "summarise_revisions.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())["results"]
    train = summary["train eager, target tokens/s"]
    assert train["before"] == [100, 300] and train["after"] == [110, 270]  # pair 3 has no mate
    assert train["after_over_before_per_pair"] == [1.1, 0.9]
    assert train["after_over_before_medians"] == 190 / 200
    assert summary["translate beam 5, sentences/s"]["after_over_before_medians"] == 1.25
    assert summary["train eager (one harness), target tokens/s"]["median_after"] == 220
