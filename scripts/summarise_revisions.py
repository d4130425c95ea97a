#!/usr/bin/env python
"""Summarises what ``scripts/bench_revisions.sh`` wrote: for the training step and for each
beam size, the median speed of the checkout before and after, the ratio of the medians and the
ratio within each interleaved pair; prints a table and writes ``summary.json`` beside the runs.

  python scripts/summarise_revisions.py bench/results/NAME
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

SIDES = ("before", "after")
_RUN = re.compile(r"(bench_train|bench_translate)_(before|after)_(\d+)\.json")
_SAME_HARNESS = re.compile(r"bench_public_step_(before|after)_(\d+)\.log")
_RATE = re.compile(r"median (\d+) target tokens/s")


def measurements(folder: Path) -> dict[str, dict[str, dict[int, float]]]:
    """``{quantity: {side: {pair: value}}}``: real target tokens/s of eager training steps
    (each revision's harness, and one harness for both), and sentences/s per beam size."""
    found: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for path in sorted(folder.glob("bench_public_step_*.log")):
        match, rate = _SAME_HARNESS.fullmatch(path.name), _RATE.search(path.read_text())
        if match is not None and rate is not None:
            quantity = "train eager (one harness), target tokens/s"
            found[quantity][match[1]][int(match[2])] = float(rate[1])
    for path in sorted(folder.glob("*.json")):
        match = _RUN.fullmatch(path.name)
        if match is None:
            continue
        kind, side, pair = match[1], match[2], int(match[3])
        report = json.loads(path.read_text())
        if kind == "bench_train":
            rate = report["results"]["eager"]["tgt_tokens_per_second"]
            found["train eager, target tokens/s"][side][pair] = rate
        else:
            for row in report["rows"]:
                quantity = f"translate beam {row['beam_size']}, sentences/s"
                found[quantity][side][pair] = row["sentences_per_second"]
    return found


def summarise(found: dict[str, dict[str, dict[int, float]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for quantity, sides in found.items():
        pairs = sorted(set(sides["before"]) & set(sides["after"]))
        if not pairs:
            continue
        before = [sides["before"][p] for p in pairs]
        after = [sides["after"][p] for p in pairs]
        summary[quantity] = {
            "before": before,
            "after": after,
            "median_before": statistics.median(before),
            "median_after": statistics.median(after),
            "after_over_before_medians": statistics.median(after) / statistics.median(before),
            "after_over_before_per_pair": [a / b for a, b in zip(after, before, strict=True)],
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="what bench_revisions.sh wrote")
    args = parser.parse_args()
    summary = summarise(measurements(args.folder))
    if not summary:
        print(f"no paired benchmark results in {args.folder}", file=sys.stderr)
        return 1
    commits = {s: (args.folder / f"{s}.commit").read_text().strip()[:10] for s in SIDES}
    print(f"before {commits['before']}, after {commits['after']}\n")
    print("| quantity | median before | median after | after/before | per pair |")
    print("|---|---:|---:|---:|---|")
    for quantity, row in summary.items():
        pairs = " ".join(f"{r:.2f}" for r in row["after_over_before_per_pair"])
        print(
            f"| {quantity} | {row['median_before']:.1f} | {row['median_after']:.1f} | "
            f"{row['after_over_before_medians']:.3f} | {pairs} |"
        )
    report = {"commits": commits, "results": summary}
    (args.folder / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
