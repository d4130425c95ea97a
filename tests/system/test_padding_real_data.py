"""The padding benchmark on the real Multi30k and PTB corpora (slow: trains sentencepiece)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("NMTBUCKET_DATA_ROOT", ROOT.parent / "shared" / "data"))


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "multi30k").is_dir(), reason=f"no corpora under {DATA}")
def test_padding_on_real_corpora(tmp_path) -> None:
    out = tmp_path / "padding.json"
    command = [sys.executable, str(ROOT / "scripts" / "bench_padding.py"), "--data-root", str(DATA),
               "--cache-dir", str(tmp_path), "--json", str(out)]  # fmt: skip
    subprocess.run(command, check=True, timeout=900)
    results = json.loads(out.read_text())["results"]
    m30k = results["multi30k"]
    assert all(row["each_seen_once"] for row in m30k.values())
    assert m30k["auto-32"]["step_shapes"] <= 32
    assert m30k["auto-32"]["padding_percent"] < m30k["diagonal-8"]["padding_percent"]
    assert results["ptb"]["auto-32"]["padding_percent"] <= 5.0
