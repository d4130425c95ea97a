#!/usr/bin/env python
"""Eager training steps on the demo task through import paths that revisions before and after
the issue-13 layout share, so that one harness measures two library revisions: run it with each
checkout's interpreter (or ``PYTHONPATH=CHECKOUT``), interleaved, and compare the medians.
``scripts/bench_train.py`` is the benchmark of a revision; this is the check that a change of
its harness does not hide or fake a change of the library.

  python scripts/bench_public_step.py --cache-dir /tmp/cache --rounds 5 --steps 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from hydra import compose, initialize_config_module

import nmtbucket
from nmtbucket import (
    BucketBatchSampler,
    BucketingModule,
    BucketIterator,
    ParameterUpdate,
    Seq2SeqStep,
    build_bucket_scheme,
    build_sym_gen,
)
from nmtbucket.data.prepare import prepare_data

try:
    from nmtbucket.cli.train import to_train_config
    from nmtbucket.constants import PAD_ID
except ImportError:  # before the issue-13 layout
    from nmtbucket.train import to_train_config

    from nmtbucket.data.tokenizer import PAD_ID


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", required=True, help="data.cache_dir for the demo task")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    args = parser.parse_args()
    overrides = ["+experiment=demo", "trainer.device=cpu", f"data.cache_dir={args.cache_dir}"]
    with initialize_config_module(config_module="nmtbucket.conf", version_base=None):
        config = to_train_config(compose("train", overrides=overrides))
    data = prepare_data(config.data, progress=False, log=lambda message: None)
    scheme = build_bucket_scheme(data.train.lengths, config.bucketing)
    sampler = BucketBatchSampler(
        data.train.lengths, scheme.buckets, scheme.batch_sizes, seed=config.trainer.seed
    )
    iterator = BucketIterator(data.train, sampler, PAD_ID)
    batches: list = []
    while len(batches) < args.rounds * args.steps:
        batches.extend(iterator)
    torch.manual_seed(config.trainer.seed)
    vocab = (data.src_tokenizer.vocab_size, data.tgt_tokenizer.vocab_size)
    model = BucketingModule(build_sym_gen(config.model, *vocab), scheme.default_bucket_key)
    optimizer = torch.optim.AdamW(model.train().parameters(), lr=torch.tensor(1e-3), fused=True)
    update = ParameterUpdate(model.parameters(), optimizer, config.trainer.clip_norm)
    step = Seq2SeqStep(config.trainer.label_smoothing)
    for batch in iterator.example_batches():  # every key once, untimed
        step.normalizer = max(batch.num_target_tokens, 1)
        model.train_step(batch, step, update)
    rates = []
    for round_index in range(args.rounds):
        chunk = batches[round_index * args.steps : (round_index + 1) * args.steps]
        tokens, started = 0, time.perf_counter()
        for batch in chunk:
            step.normalizer = max(batch.num_target_tokens, 1)
            float(model.train_step(batch, step, update))  # the loss read, as the trainer does
            tokens += batch.num_target_tokens
        rates.append(tokens / (time.perf_counter() - started))
    print(f"{nmtbucket.__file__}: median {statistics.median(rates):.0f} target tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
