#!/usr/bin/env python
"""Padding benchmark: how much of the computed tokens is padding under different batching schemes.

For each corpus, one epoch is batched with a budget of padded tokens per batch, B x (S + T)
(B x S for the 1-D language-model case), and the script reports padding % of computed tokens,
distinct step shapes (B, S[, T]), keys, and examples seen, for the following schemes. For bucketed
schemes "of which in keys" is the padding if every example took one row of its cheapest key; the
rest is the cost of partial batches (leftovers moved to larger keys, one filler batch).

  random      shuffled examples, filled greedily up to the budget (no buckets)
  sorted      fairseq-style: sorted by (tgt, src) length, filled greedily up to the budget
  diagonal-8  Sockeye-style diagonal buckets of width 8 through nmtbucket's iterator
  grid-8      a full fixed-width grid of width 8 through nmtbucket's iterator
  auto-K      nmtbucket's automatic buckets with at most K keys

Multi30k en-de is tokenised with a joint 8000-piece unigram sentencepiece model trained on its
train split; PTB uses its words. Every sequence counts one extra token (EOS, or BOS for the
decoder input), as the models will see it. Prints a Markdown table and writes JSON.

  python scripts/bench_padding.py --data-root ../shared/data --json bench/results/padding.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from nmtbucket import BucketBatchSampler, BucketingConfig, build_bucket_scheme
from nmtbucket.bucketing.buckets import count_padded_tokens
from nmtbucket.bucketing.keys import key_lengths
from nmtbucket.bucketing.plan import greedy_batches
from nmtbucket.constants import FILLER
from nmtbucket.data.corpus import read_lines
from nmtbucket.data.tokenizer import train_sentencepiece
from nmtbucket.errors import NmtBucketError

DATA_ROOT_VARIABLE = "NMTBUCKET_DATA_ROOT"
TARGET_PADDING, TARGET_SHAPES = 5.0, 32


def multi30k_lengths(root: Path, cache_dir: Path, vocab_size: int) -> torch.Tensor:
    """(N, 2) source and target lengths (+1 each) of Multi30k train under a joint spm model."""
    src_file, tgt_file = root / "multi30k" / "train.en", root / "multi30k" / "train.de"
    tokenizer = train_sentencepiece([src_file, tgt_file], cache_dir, vocab_size, "unigram")
    src = tokenizer.encode(read_lines(src_file))
    tgt = tokenizer.encode(read_lines(tgt_file))
    return torch.tensor([[len(s) + 1, len(t) + 1] for s, t in zip(src, tgt, strict=True)])


def ptb_lengths(root: Path) -> torch.Tensor:
    """(N, 1) words + 1 (<eos>) of every PTB training sentence."""
    return torch.tensor(
        [[len(line.split()) + 1] for line in read_lines(root / "ptb" / "train.txt")]
    )


def measure_unbucketed(lengths: torch.Tensor, batches: Iterable[list[int]]) -> dict:
    computed, shapes, seen = 0, set(), []
    for rows in batches:
        widths = lengths[rows].max(dim=0).values.tolist()
        computed += len(rows) * sum(widths)
        shapes.add((len(rows), *widths))
        seen.extend(rows)
    return _row(lengths, computed, shapes, seen, keys=None, steps=None)


def measure_bucketed(lengths: torch.Tensor, config: BucketingConfig) -> dict:
    started = time.perf_counter()
    scheme = build_bucket_scheme(lengths, config)
    seconds = time.perf_counter() - started
    sampler = BucketBatchSampler(lengths, scheme.buckets, scheme.batch_sizes, seed=0)
    computed, shapes, seen, steps = 0, set(), [], 0
    for step in sampler:
        rows = len(step.example_ids)
        computed += rows * sum(key_lengths(step.bucket_key))
        shapes.add((rows, *key_lengths(step.bucket_key)))
        seen.extend(i for i in step.example_ids if i != FILLER)
        steps += 1
    row = _row(lengths, computed, shapes, seen, keys=len(scheme.buckets), steps=steps)
    one_row_each = count_padded_tokens(sampler.assignment)  # before partial-batch effects
    row["key_padding_percent"] = round(100.0 * (1 - row["real_tokens"] / one_row_each), 2)
    row["define_seconds"] = round(seconds, 2)
    return row


def _row(lengths, computed, shapes, seen, keys, steps) -> dict:
    real = int(lengths.sum())
    exactly_once = len(seen) == len(set(seen)) == len(lengths)
    return {
        "padding_percent": round(100.0 * (1 - real / computed), 2),
        "step_shapes": len(shapes),
        "keys": keys,
        "examples_seen": len(set(seen)),
        "examples": len(lengths),
        "each_seen_once": exactly_once,
        "computed_tokens": computed,
        "real_tokens": real,
    }


def run_corpus(lengths: torch.Tensor, budget: int, key_counts: Sequence[int]) -> dict[str, dict]:
    rng = random.Random(0)
    shuffled = list(range(len(lengths)))
    rng.shuffle(shuffled)
    columns = list(range(lengths.shape[1]))[::-1]  # fairseq sorts by target, then source
    sorted_order = sorted(range(len(lengths)), key=lambda i: [int(lengths[i, c]) for c in columns])
    rows = {
        "random": measure_unbucketed(lengths, greedy_batches(lengths, shuffled, budget)),
        "sorted (fairseq)": measure_unbucketed(
            lengths, greedy_batches(lengths, sorted_order, budget)
        ),
    }
    for strategy in ("diagonal", "grid"):
        config = BucketingConfig(strategy=strategy, width=8, token_budget=budget)
        rows[f"{strategy}-8"] = measure_bucketed(lengths, config)
    for count in key_counts:
        rows[f"auto-{count}"] = measure_bucketed(lengths, auto_config(count, budget))
    fewest = fewest_keys_within(lengths, budget, TARGET_PADDING, max(key_counts))
    if fewest is not None:
        rows[f"auto-{fewest} (fewest keys <= {TARGET_PADDING:g}%)"] = measure_bucketed(
            lengths, auto_config(fewest, budget)
        )
    return rows


def auto_config(max_keys: int, budget: int) -> BucketingConfig:
    return BucketingConfig(strategy="auto", max_keys=max_keys, token_budget=budget)


def fewest_keys_within(lengths: torch.Tensor, budget: int, target: float, most: int) -> int | None:
    """Smallest auto key count whose measured padding is within ``target`` % (binary search)."""
    low, high, best = 1, most, None
    while low <= high:
        middle = (low + high) // 2
        if measure_bucketed(lengths, auto_config(middle, budget))["padding_percent"] <= target:
            best, high = middle, middle - 1
        else:
            low = middle + 1
    return best


def markdown_table(name: str, rows: dict[str, dict]) -> str:
    lines = [
        f"**{name}**",
        "",
        "| batching | padding % | of which in keys | step shapes | keys | examples seen |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, row in rows.items():
        keys = "-" if row["keys"] is None else row["keys"]
        in_keys = row.get("key_padding_percent", "-")
        seen = f"{row['examples_seen']}/{row['examples']}"
        if not row["each_seen_once"]:
            seen += " (NOT exactly once)"
        lines.append(
            f"| {method} | {row['padding_percent']:.2f} | {in_keys} | {row['step_shapes']} "
            f"| {keys} | {seen} |"
        )
    return "\n".join(lines)


def resolve_data_root(given: str | None) -> Path:
    root = given or os.environ.get(DATA_ROOT_VARIABLE)
    if not root:
        raise NmtBucketError(
            f"no data root: pass --data-root or set {DATA_ROOT_VARIABLE} "
            "(for example to ../shared/data)"
        )
    path = Path(root)
    if not path.is_dir():
        raise NmtBucketError(
            f"data root {path} is not a directory (from --data-root/{DATA_ROOT_VARIABLE})"
        )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help=f"corpus root (default: ${DATA_ROOT_VARIABLE})")
    parser.add_argument(
        "--corpus", nargs="+", choices=["multi30k", "ptb"], default=["multi30k", "ptb"]
    )
    parser.add_argument("--budget", type=int, default=4096, help="padded tokens per batch")
    parser.add_argument("--keys", type=int, nargs="+", default=[16, 32, 64], help="auto key counts")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--cache-dir", default=".cache/nmtbucket", help="sentencepiece models")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    try:
        root = resolve_data_root(args.data_root)
        loaders = {
            "multi30k": lambda: multi30k_lengths(root, Path(args.cache_dir), args.vocab_size),
            "ptb": lambda: ptb_lengths(root),
        }
        results = {}
        for corpus in args.corpus:
            lengths = loaders[corpus]()
            results[corpus] = run_corpus(lengths, args.budget, args.keys)
            title = f"{corpus} train, {len(lengths)} examples, budget {args.budget} padded tokens"
            print(markdown_table(title, results[corpus]), end="\n\n", flush=True)
    except NmtBucketError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        report = {
            "command": " ".join(["python", *sys.argv]),
            "date": datetime.date.today().isoformat(),
            "machine": platform.platform(),
            "torch": torch.__version__,
            "budget": args.budget,
            "results": results,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
