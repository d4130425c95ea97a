#!/usr/bin/env python
"""Training-throughput benchmark: the same model and optimizer trained on the same corpus with
nmtbucket's buckets and with random batching of the same token budget, in one run.

  bucketed  the experiment's bucket scheme through BucketIterator (one static shape per key)
  random    shuffled examples filled greedily while rows x (max S + max T) <= token budget,
            each batch padded to its own longest source and target (the usual unbucketed
            PyTorch loop; through the same BucketingModule, whose key is then just the shape)

Each round runs ``--steps`` full training steps (forward, backward, clipping, AdamW) of each
variant, alternating which goes first; the first ``--warmup`` steps of every variant are not
timed. The table gives the median over rounds of real target tokens per second (padding
excluded), the padding % of computed tokens, and the ratio. Writes JSON with the machine,
versions, command and date.

  python scripts/bench_train.py --experiment multi30k_transformer_cpu --data-root ../shared/data \\
      --json bench/results/train-throughput-cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_padding import greedy_batches

import nmtbucket.train  # noqa: F401  (registers the config schema)
from nmtbucket.bucketing.iterator import BucketBatchSampler, BucketIterator
from nmtbucket.bucketing.keys import LengthPair
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.scheme import build_bucket_scheme
from nmtbucket.data.batch import Batch, collate
from nmtbucket.data.dataset import SequenceDataset
from nmtbucket.data.prepare import prepare_data
from nmtbucket.data.tokenizer import PAD_ID
from nmtbucket.models import build_sym_gen
from nmtbucket.optim import build_optimizer
from nmtbucket.train import to_train_config
from nmtbucket.train_step import Seq2SeqStep


def random_batches(dataset: SequenceDataset, budget: int, seed: int) -> Iterator[Batch]:
    """Endless random batches, each padded to its own longest source and target."""
    lengths = dataset.lengths  # (N, 2)
    rng = random.Random(seed)
    while True:
        order = list(range(len(dataset)))
        rng.shuffle(order)
        for rows in greedy_batches(lengths, order, budget):
            longest = lengths[rows].max(dim=0).values
            yield collate(dataset, rows, LengthPair(int(longest[0]), int(longest[1])), PAD_ID)


def bucketed_batches(iterator: BucketIterator) -> Iterator[Batch]:
    while True:
        yield from iterator


def timed_steps(
    model: BucketingModule,
    optimizer: torch.optim.Optimizer,
    step: Seq2SeqStep,
    batches: Iterator[Batch],
    count: int,
    clip_norm: float,
) -> dict[str, float]:
    """Run ``count`` training steps; their time, real target tokens and padding."""
    tgt_tokens = real = padded = 0
    start = time.perf_counter()
    for _ in range(count):
        batch = next(batches)
        step.normalizer = max(batch.num_target_tokens, 1)  # the mean loss per target token
        model.train_step(batch, step)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        assert batch.tgt_lengths is not None
        tgt_tokens += int(batch.tgt_lengths.sum())
        real += batch.num_real_tokens
        padded += batch.num_padded_tokens
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tgt_tokens": tgt_tokens, "real": real, "padded": padded}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="multi30k_transformer_cpu")
    parser.add_argument("--data-root", default=os.environ.get("NMTBUCKET_DATA_ROOT"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if not args.data_root:
        parser.error("set NMTBUCKET_DATA_ROOT or pass --data-root")

    with initialize_config_module(config_module="nmtbucket.conf", version_base=None):
        cfg = compose(
            "train", overrides=[f"+experiment={args.experiment}", f"data.root={args.data_root}"]
        )
    config = to_train_config(cfg)
    data = prepare_data(config.data, progress=False, log=lambda message: None)
    scheme = build_bucket_scheme(data.train.lengths, config.bucketing)
    sampler = BucketBatchSampler(
        data.train.lengths, scheme.buckets, scheme.batch_sizes, seed=config.trainer.seed
    )
    sources = {
        "bucketed": bucketed_batches(BucketIterator(data.train, sampler, PAD_ID)),
        "random": random_batches(data.train, config.bucketing.token_budget, config.trainer.seed),
    }
    torch.manual_seed(config.trainer.seed)
    vocab = (data.src_tokenizer.vocab_size, data.tgt_tokenizer.vocab_size)
    model = BucketingModule(build_sym_gen(config.model, *vocab), scheme.default_bucket_key)
    model.train()
    optimizer = build_optimizer(model.parameters(), config.trainer)
    step = Seq2SeqStep(config.trainer.label_smoothing)
    clip = config.trainer.clip_norm or float("inf")

    for batches in sources.values():
        timed_steps(model, optimizer, step, batches, args.warmup, clip)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    for round_index in range(args.rounds):
        names = list(sources) if round_index % 2 == 0 else list(reversed(sources))
        for name in names:
            result = timed_steps(model, optimizer, step, sources[name], args.steps, clip)
            rounds[name].append(result)
            print(
                f"round {round_index + 1} {name}: {result['tgt_tokens'] / result['seconds']:.0f} "
                "target tokens/s",
                file=sys.stderr,
            )
    summary = {name: _summarise(results, args.steps) for name, results in rounds.items()}
    ratio = (
        summary["bucketed"]["tgt_tokens_per_second"] / summary["random"]["tgt_tokens_per_second"]
    )
    _print_table(summary, ratio, args, config.bucketing.token_budget)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_report(summary, ratio, args, config), indent=2) + "\n")
    return 0


def _summarise(results: list[dict[str, float]], steps: int) -> dict[str, Any]:
    rates = [r["tgt_tokens"] / r["seconds"] for r in results]
    real = sum(r["real"] for r in results)
    padded = sum(r["padded"] for r in results)
    return {
        "tgt_tokens_per_second": statistics.median(rates),
        "tgt_tokens_per_second_rounds": rates,
        "padding_percent": 100 * (1 - real / padded),
        "seconds_per_step": statistics.median(r["seconds"] for r in results) / steps,
    }


def _print_table(summary: dict[str, dict[str, Any]], ratio: float, args: Any, budget: int) -> None:
    print(
        f"\n{args.experiment}: {args.rounds} rounds x {args.steps} steps, budget {budget} "
        f"padded tokens per batch, {torch.get_num_threads()} threads\n"
    )
    print("| batching | real target tokens/s (median) | padding % |")
    print("|---|---:|---:|")
    for name, row in summary.items():
        print(f"| {name} | {row['tgt_tokens_per_second']:.0f} | {row['padding_percent']:.2f} |")
    print(f"\nbucketed / random throughput: {ratio:.2f}x")


def _report(summary: dict[str, Any], ratio: float, args: Any, config: Any) -> dict[str, Any]:
    return {
        "benchmark": "train-throughput",
        "experiment": args.experiment,
        "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "warmup_steps": args.warmup,
        "token_budget": config.bucketing.token_budget,
        "model": config.model.__dict__,
        "results": summary,
        "bucketed_over_random": ratio,
    }


if __name__ == "__main__":
    sys.exit(main())
