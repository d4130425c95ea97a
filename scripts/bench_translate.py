#!/usr/bin/env python
"""Translation benchmark: test-set BLEU/chrF and sentences per second of a trained run, for
several beam sizes and checkpoint choices (one checkpoint or the average of several).

Every variant translates the run's test split (or ``--split``) with the Python API
(``Translator.from_checkpoint(run).translate(lines)``) ``--repeats`` times after one untimed
warm-up batch; the table gives the sacreBLEU scores (identical across repeats) and the median
sentences per second (model loading excluded). Writes JSON with the machine, versions, command
and date.

  python scripts/bench_translate.py runs/multi30k_transformer_cpu --data-root ../shared/data \\
      --beams 1 5 --weights best last:5 best:3 --json bench/results/translate-cpu.json
  python scripts/bench_translate.py runs/multi30k_transformer_cpu --split val --beams 5 \\
      --repeats 1 --length-penalties 0 0.6 1 1.5 2   # choose the length penalty on val
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nmtbucket.config import SearchConfig
from nmtbucket.data.corpus import read_lines
from nmtbucket.search import Hypothesis, greedy_search
from nmtbucket.search.decoding import decode_in_buckets
from nmtbucket.translation.run_folder import RunFolder
from nmtbucket.translation.scores import translation_scores
from nmtbucket.translation.translator import Translator


def parse_weights(spec: str) -> tuple[str, int]:
    """``best``, ``last``, ``best:K`` or ``last:K`` (average K) into (weights, average)."""
    name, _, count = spec.partition(":")
    return name, int(count or 1)


def read_split(
    folder: RunFolder, data_root: str | None, split: str | None
) -> tuple[list[str], list[str], str]:
    """Source and reference lines of a split of the run's corpus (default: its test split), and
    the split's name."""
    data = folder.config["data"]
    if data["task"] != "parallel":
        raise SystemExit("this benchmark reads a parallel corpus; the run used another task")
    root = Path(data_root or data["root"] or os.environ.get("NMTBUCKET_DATA_ROOT", ""))
    split = split or data["test"]
    base = root / data["dir"] / split
    src = read_lines(f"{base}.{data['src_lang']}")
    ref = read_lines(f"{base}.{data['tgt_lang']}")
    return src, ref, split


def same_as_greedy(translator: Translator, src: list[str], outputs: list[str]) -> int:
    """How many of ``outputs`` (beam 1) equal plain greedy search's translation."""

    def greedy(
        src: torch.Tensor, lengths: torch.Tensor, limits: torch.Tensor, state_len: int
    ) -> list[list[Hypothesis]]:
        return [
            [Hypothesis(t, 0.0, 0.0)] for t in greedy_search(translator.core, src, lengths, limits)
        ]

    sources = translator.encode(src)
    found = decode_in_buckets(
        [s for s in sources if s],
        translator.src_buckets,
        translator.search,
        greedy,
        translator.device,
    )
    texts = iter(translator.tgt_tokenizer.decode(h[0].tokens) for h in found)
    greedy_outputs = [next(texts) if s else "" for s in sources]
    return sum(a == b for a, b in zip(outputs, greedy_outputs, strict=True))


def measure(translator: Translator, src: list[str], ref: list[str], repeats: int) -> dict[str, Any]:
    translator.translate(src[:32])  # warm-up: first-call allocations, thread pools
    seconds, outputs = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        outputs = translator.translate(src)
        seconds.append(time.perf_counter() - started)
    scores = translation_scores(outputs, ref)
    median = statistics.median(seconds)
    same = None
    if translator.search.beam_size == 1:
        same = same_as_greedy(translator, src, outputs)
        print(f"beam 1 equals greedy search on {same} of {len(src)} sentences", flush=True)
    return {
        "bleu": scores.bleu,
        "chrf": scores.chrf,
        "bleu_signature": scores.bleu_signature,
        "seconds": seconds,
        "median_seconds": median,
        "sentences_per_second": len(src) / median,
        "truncated_lines": translator.truncated_lines,
        "same_as_greedy": same,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory written by nmtbucket-train")
    parser.add_argument("--data-root", help="default: the run's data.root, $NMTBUCKET_DATA_ROOT")
    parser.add_argument("--split", help="the corpus split to translate (default: the test split)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument(
        "--weights",
        nargs="+",
        default=["best"],
        help="checkpoints: best, last, best:K or last:K (average K); the first is timed at "
        "every beam size, the others only at the largest",
    )
    parser.add_argument(
        "--length-penalties",
        type=float,
        nargs="+",
        default=[1.0],
        help="GNMT alphas; every variant runs with each",
    )
    parser.add_argument("--token-budget", type=int, default=SearchConfig.token_budget)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args()


def run_variant(
    args: argparse.Namespace, spec: str, beam: int, alpha: float, src: list[str], ref: list[str]
) -> dict[str, Any]:
    """Load the checkpoint(s) ``spec`` names and measure beam ``beam`` with penalty ``alpha``."""
    weights, average = parse_weights(spec)
    search = SearchConfig(beam_size=beam, length_penalty=alpha, token_budget=args.token_budget)
    translator = Translator.from_checkpoint(
        args.run, weights=weights, average=average, search=search, device=args.device
    )
    row = {"weights": spec, "beam_size": beam, "length_penalty": alpha}
    row |= measure(translator, src, ref, args.repeats)
    print(
        f"{spec:>8}  beam {beam}  alpha {alpha}  BLEU {row['bleu']:.2f}  chrF {row['chrf']:.2f}  "
        f"{row['sentences_per_second']:.1f} sent/s (median of {args.repeats})",
        flush=True,
    )
    return row


def main() -> None:
    args = parse_args()
    folder = RunFolder.open(args.run)
    src, ref, split = read_split(folder, args.data_root, args.split)
    variants = [(args.weights[0], beam) for beam in args.beams]
    variants += [(spec, max(args.beams)) for spec in args.weights[1:]]
    rows = [
        run_variant(args, spec, beam, alpha, src, ref)
        for alpha in args.length_penalties
        for spec, beam in variants
    ]
    result = {
        "benchmark": "translate",
        "run": str(args.run),
        "split": split,
        "sentences": len(src),
        "token_budget": args.token_budget,
        "rows": rows,
        "device": args.device,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "command": " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
