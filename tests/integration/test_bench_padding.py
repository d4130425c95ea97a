"""The padding benchmark on tiny corpora written by the test, and its data-root errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_padding.py"


def write_corpora(root: Path) -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(60)]
    (root / "multi30k").mkdir(parents=True)
    (root / "ptb").mkdir()
    en, de, ptb = [], [], []
    for _ in range(400):
        n = rng.randint(1, 25)
        en.append(" ".join(rng.choices(words, k=n)))
        de.append(" ".join(rng.choices(words, k=max(1, n + rng.randint(-3, 5)))))
        ptb.append(" " + " ".join(rng.choices(words, k=n)) + " ")
    (root / "multi30k" / "train.en").write_text("\n".join(en) + "\n")
    (root / "multi30k" / "train.de").write_text("\n".join(de) + "\n")
    (root / "ptb" / "train.txt").write_text("\n".join(ptb) + "\n")


def test_bench_padding_on_tiny_corpora(tmp_path) -> None:
    write_corpora(tmp_path / "data")
    out = tmp_path / "padding.json"
    command = [
        sys.executable, str(SCRIPT), "--data-root", str(tmp_path / "data"), "--vocab-size", "50",
        "--budget", "512", "--keys", "4", "8", "--cache-dir", str(tmp_path / "cache"),
        "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    assert "| auto-8 |" in result.stdout
    report = json.loads(out.read_text())
    for corpus in ("multi30k", "ptb"):
        rows = report["results"][corpus]
        assert all(row["each_seen_once"] for row in rows.values())
        assert rows["auto-8"]["step_shapes"] <= 8
        assert rows["auto-8"]["padding_percent"] <= rows["auto-4"]["padding_percent"]
        assert rows["auto-8"]["padding_percent"] < rows["random"]["padding_percent"]
    assert list(report["results"]["ptb"]["auto-4"]) and report["budget"] == 512


def test_bench_padding_says_which_variable_to_set(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "NMTBUCKET_DATA_ROOT" in result.stderr
