"""The translation benchmark script on the tiny trained run: one row per variant and system."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_translate.py"
CHECKOUT = SCRIPT.parents[1]


def test_bench_translate_writes_a_row_per_variant(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, str(SCRIPT), str(tiny_run), "--beams", "1", "2", "--static"]
    command += ["--weights", "best", "last:2", "--repeats", "2", "--json", str(out)]
    command += ["--previous", str(CHECKOUT)]  # this checkout stands in for an earlier one
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.read_text())
    variants = [(r["system"], r.get("weights"), r["beam_size"]) for r in result["rows"]]
    assert variants == [
        ("nmtbucket", "best", 1),
        ("nmtbucket", "best", 2),
        ("nmtbucket", "last:2", 2),
        ("nmtbucket-static", "best", 1),
        ("nmtbucket-static", "best", 2),
        ("nmtbucket-previous", "best", 1),
        ("nmtbucket-previous", "best", 2),
    ]
    rows = {(r["system"], r["weights"], r["beam_size"]): r for r in result["rows"]}
    for row in result["rows"]:
        assert len(row["seconds"]) == 2 and row["sentences_per_second"] > 0
        assert 0 <= row["bleu"] <= 100 and row["output_pieces"] >= 0
        expected = result["sentences"] if row["beam_size"] == 1 else None
        if row["system"] != "nmtbucket-previous":
            assert row["same_as_greedy"] == expected
    for beam in (1, 2):  # the same code in another process translates alike
        previous = rows[("nmtbucket-previous", "best", beam)]
        assert previous["bleu"] == rows[("nmtbucket", "best", beam)]["bleu"]
    assert result["split"] == "test" and result["sentences"] == 6
    assert "beam_size 2" in done.stdout
