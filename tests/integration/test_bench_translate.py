"""The translation benchmark script on the tiny trained run: it writes one row per variant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_translate.py"


def test_bench_translate_writes_a_row_per_variant(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, str(SCRIPT), str(tiny_run), "--beams", "1", "2"]
    command += ["--weights", "best", "last:2", "--repeats", "2", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.read_text())
    variants = [(r["weights"], r["beam_size"]) for r in result["rows"]]
    assert variants == [("best", 1), ("best", 2), ("last:2", 2)]
    for row in result["rows"]:
        assert len(row["seconds"]) == 2 and row["sentences_per_second"] > 0
        assert 0 <= row["bleu"] <= 100
        expected = result["sentences"] if row["beam_size"] == 1 else None
        assert row["same_as_greedy"] == expected
    assert result["split"] == "test" and result["sentences"] == 6
    assert "beam 2" in done.stdout
