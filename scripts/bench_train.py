#!/usr/bin/env python
"""Training-step benchmark of the executors: the same model, the same batches, in one run.

  eager       bucketed batches, plain PyTorch (one static shape per key)
  compile     bucketed batches, torch.compile per key (static shapes)
  cuda_graph  bucketed batches, each key's whole step (forward, backward, clipping, optimizer)
              replayed from one CUDA graph, all graphs in one memory pool (CUDA only)
  pad_to_max  the very same rows, each batch padded to the largest key, eager: the unbucketed
              baseline
  X_sync      executor X (eager, compile, cuda_graph), but reading the loss and the update's
              outcome on the host after every step, as nmtbucket-train did before it counted
              them on the device: what the per-step host synchronisation costs

Every variant starts from the same weights, first runs one step on a batch of every key
(largest first: where cuda_graph captures and compile compiles, both timed and reported), then
rounds of ``--steps`` training steps on the same batches, alternating the order of variants
between rounds. A step is what ``nmtbucket-train`` does per batch: copy it to the device, run
step and update; the update's tally (updates made, losses) is read once per round, as the
trainer reads it once per log interval. Reported: the median over rounds of real target tokens per
second (padding excluded), padding %, capture/compile seconds, peak device memory after the
first steps; on CUDA also the memory of every key's graph in one shared pool against the
largest key alone and against one pool per key. Writes JSON with device, versions, command and
date.

  python scripts/bench_train.py +experiment=multi30k_transformer data.root=../shared/data \\
      --json bench/results/train-executors-h100.json

Arguments other than the options below are Hydra overrides of the training config.

``--ranks N`` measures data-parallel training instead: whole ``nmtbucket-train`` runs of
``--updates`` updates, taking turns for ``--rounds`` rounds, at the same global batch:

  one_process    one process with all ``--threads`` threads (bucketing.token_budget x N,
                 batch sizes rounded to a multiple of N: exactly the rows of the N ranks)
  ranks          N ranks under torchrun (gloo on the CPU), ``--threads`` / N threads each
  one_thread     one process with ``--threads`` / N threads, the same global batch

Reported: real target tokens/s of each run's training (``results.json``; validation and
scoring are not timed), medians, ``ranks`` over ``one_process`` (what N ranks gain on the same
cores) and the scaling efficiency, ``ranks`` / (N x ``one_thread``).

  python scripts/bench_train.py --ranks 2 --threads 2 --updates 60 --rounds 3 \\
      +experiment=multi30k_transformer_cpu data.root=../shared/data \\
      --json bench/results/train-ranks-cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module

from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.cli.train import to_train_config
from nmtbucket.config import TrainConfig
from nmtbucket.constants import PAD_ID
from nmtbucket.data.batch import Batch
from nmtbucket.data.iterator import BucketIterator
from nmtbucket.device import resolve_device
from nmtbucket.executors.compiled import CompileFactory
from nmtbucket.executors.cuda_graph import CudaGraphFactory
from nmtbucket.executors.graph_memory import measure_capture_memory
from nmtbucket.executors.interface import ExecutorFactory
from nmtbucket.executors.selection import build_executor_factory
from nmtbucket.executors.update import ParameterUpdate
from nmtbucket.models import build_sym_gen
from nmtbucket.training.optim import build_optimization
from nmtbucket.translation.pipeline import prepare_translation
from nmtbucket.translation.step import Seq2SeqStep

EXECUTORS = ("eager", "compile", "cuda_graph")
VARIANTS = (*EXECUTORS, "pad_to_max", *(f"{name}_sync" for name in EXECUTORS))
SYNC = "_sync"


@dataclass
class Variant:
    """One way of running the steps, with its own model, optimizer and measurements."""

    name: str
    model: BucketingModule
    step: Seq2SeqStep
    update: ParameterUpdate
    pad_to: Any = None  # a key to pad every batch to (pad_to_max), else None
    reads_every_step: bool = False  # the _sync variants
    first_steps_seconds: float = 0.0
    graph_seconds: float = 0.0  # capture (cuda_graph) or compile (compile) time
    peak_allocated_mib: float = 0.0
    peak_reserved_mib: float = 0.0
    rounds: list[dict[str, Any]] = field(default_factory=list)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, help="default: all usable")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per variant and round")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--ranks", type=int, help="compare N torchrun ranks with one process")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="--ranks: cores")
    parser.add_argument("--updates", type=int, default=60, help="--ranks: updates per run")
    args, overrides = parser.parse_known_args()
    if args.ranks:
        return _compare_ranks(args, overrides)

    with initialize_config_module(config_module="nmtbucket.conf", version_base=None):
        config = to_train_config(compose("train", overrides=overrides))
    device = resolve_device(config.trainer.device)
    names = args.variants or _default_variants(device)
    if any(_executor(name) == "cuda_graph" for name in names) and device.type != "cuda":
        parser.error("the cuda_graph variant needs a CUDA device")

    config.trainer.progress = False
    task = prepare_translation(config, device)
    iterator = task.setup.train_batches
    assert isinstance(iterator, BucketIterator)
    data, scheme = task.data, task.scheme
    examples = iterator.example_batches()  # one per key, largest first
    batches = _batches(iterator, args.rounds * args.steps)
    vocab = (data.src_tokenizer.vocab_size, data.tgt_tokenizer.vocab_size)
    build = _builder(config, vocab, scheme.default_bucket_key, device)
    print(
        f"{len(examples)} keys, default {scheme.default_bucket_key}, {device}; "
        f"{args.rounds} rounds x {args.steps} steps",
        file=sys.stderr,
    )

    captures = any(_executor(name) == "cuda_graph" for name in names)
    memory = _memory_study(build, examples, device) if captures else None
    variants = [_prepare(name, build, examples, device, config, scheme) for name in names]
    for round_index in range(args.rounds):
        chunk = batches[round_index * args.steps : (round_index + 1) * args.steps]
        order = variants if round_index % 2 == 0 else variants[::-1]
        for variant in order:
            variant.rounds.append(_timed_steps(variant, chunk, device))
            rate = variant.rounds[-1]["tgt_tokens"] / variant.rounds[-1]["seconds"]
            print(f"round {round_index + 1} {variant.name}: {rate:.0f} tok/s", file=sys.stderr)

    summary = {v.name: _summarise(v) for v in variants}
    ratios = _ratios(summary)
    _print_table(summary, ratios, memory)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = _report(summary, ratios, memory, args, config, device, len(examples))
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _default_variants(device: torch.device) -> list[str]:
    """Every executor, pad-to-max, and on CUDA the per-step synchronisation of CUDA graphs."""
    if device.type == "cuda":
        return [*EXECUTORS, "cuda_graph_sync", "pad_to_max"]
    return ["eager", "compile", "pad_to_max"]


def _executor(name: str) -> str:
    """The executor a variant runs: pad_to_max runs eager, X_sync runs X."""
    return "eager" if name == "pad_to_max" else name.removesuffix(SYNC)


def _batches(iterator: BucketIterator, count: int) -> list[Batch]:
    """``count`` training batches in the iterator's order, epoch after epoch (on the host)."""
    batches: list[Batch] = []
    while len(batches) < count:
        batches.extend(iterator)
    return batches[:count]


Builder = Callable[[ExecutorFactory], tuple[BucketingModule, Seq2SeqStep, ParameterUpdate]]


def _builder(
    config: TrainConfig, vocab: tuple[int, int], default_key: Any, device: torch.device
) -> Builder:
    """Builds the experiment's model from the same seed, with its optimizer, update and step,
    as the training pipeline does."""

    def build(executors: ExecutorFactory) -> tuple[BucketingModule, Seq2SeqStep, ParameterUpdate]:
        torch.manual_seed(config.trainer.seed)
        sym_gen = build_sym_gen(config.model, *vocab)
        model = BucketingModule(sym_gen, default_key, executors).to(device).train()
        trainer = config.trainer
        optimization = build_optimization(model.parameters(), trainer, executors.captures_update)
        step = Seq2SeqStep.for_device(trainer, device)
        return model, step, optimization.update

    return build


def _factory(
    name: str, config: TrainConfig, device: torch.device, num_keys: int
) -> ExecutorFactory:
    """The executor factory of a variant, as training builds it."""
    trainer = dataclasses.replace(config.trainer, executor=_executor(name))
    return build_executor_factory(trainer, device, num_keys)


def _prepare(
    name: str,
    build: Builder,
    examples: Sequence[Batch],
    device: torch.device,
    config: TrainConfig,
    scheme: Any,
) -> Variant:
    """Build the variant and run one step of every key (capturing or compiling them)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    factory = _factory(name, config, device, len(examples))
    model, step, update = build(factory)
    pad_to = scheme.default_bucket_key if name == "pad_to_max" else None
    variant = Variant(name, model, step, update, pad_to, reads_every_step=name.endswith(SYNC))
    started = time.perf_counter()
    on_device = [_padded(b, pad_to).to(device) for b in examples]
    if isinstance(factory, CudaGraphFactory):
        model.prepare_train_steps(on_device, step, update)
    _timed_steps(variant, examples, device)
    variant.first_steps_seconds = time.perf_counter() - started
    if isinstance(factory, CudaGraphFactory):
        variant.graph_seconds = factory.capture_seconds
    elif isinstance(factory, CompileFactory):
        variant.graph_seconds = factory.compile_seconds
    if cuda:
        mib = 2**20
        variant.peak_allocated_mib = (torch.cuda.max_memory_allocated() - allocated) / mib
        variant.peak_reserved_mib = (torch.cuda.max_memory_reserved() - reserved) / mib
    print(
        f"{name}: first steps of every key in {variant.first_steps_seconds:.1f} s", file=sys.stderr
    )
    return variant


def _padded(batch: Batch, key: Any) -> Batch:
    return batch if key is None or batch.bucket_key == key else batch.pad_to(key, PAD_ID)


def _timed_steps(
    variant: Variant, batches: Sequence[Batch], device: torch.device
) -> dict[str, float]:
    """Train on ``batches`` as the trainer does (a ``_sync`` variant also reads the loss and
    the update's outcome after every step); the time, real target tokens and padding."""
    tgt_tokens = real = padded = 0
    _synchronize(device)
    started = time.perf_counter()
    for host_batch in batches:
        batch = _padded(host_batch, variant.pad_to)
        variant.step.normalizer = max(batch.num_target_tokens, 1)
        on_device = batch.to(device, non_blocking=True)
        loss = variant.model.train_step(on_device, variant.step, variant.update)
        if variant.reads_every_step:
            float(loss)
            bool(variant.update.made)
        tgt_tokens += batch.num_target_tokens
        real += batch.num_real_tokens
        padded += batch.num_padded_tokens
    made = variant.update.tally.read().made  # waits for the device, like a log line
    seconds = time.perf_counter() - started
    if made < len(batches):  # a skipped update does less work: say so next to the speed
        print(
            f"{variant.name}: {len(batches) - made} updates skipped (non-finite)", file=sys.stderr
        )
    return {
        "seconds": seconds,
        "tgt_tokens": tgt_tokens,
        "real": real,
        "padded": padded,
        "updates_made": made,
        "steps": len(batches),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory_study(
    build: Builder, examples: Sequence[Batch], device: torch.device
) -> dict[str, Any]:
    """Peak memory with the largest key's graph alone, every key in one pool, one pool each."""
    on_device = [b.to(device) for b in examples]
    largest = measure_capture_memory(build, on_device[:1], share_pool=True)
    shared = measure_capture_memory(build, on_device, share_pool=True)
    private = measure_capture_memory(build, on_device, share_pool=False)
    study: dict[str, Any] = {
        "largest_key_alone": largest.as_dict(),
        "all_keys_shared_pool": shared.as_dict(),
        "all_keys_pool_per_graph": private.as_dict(),
    }
    for kind in ("allocated", "reserved"):
        base = getattr(largest, f"peak_{kind}")
        study[f"shared_over_largest_{kind}"] = getattr(shared, f"peak_{kind}") / base
        study[f"per_graph_over_largest_{kind}"] = getattr(private, f"peak_{kind}") / base
    return study


def _summarise(variant: Variant) -> dict[str, Any]:
    rates = [r["tgt_tokens"] / r["seconds"] for r in variant.rounds]
    real = sum(r["real"] for r in variant.rounds)
    padded = sum(r["padded"] for r in variant.rounds)
    return {
        "tgt_tokens_per_second": statistics.median(rates),
        "tgt_tokens_per_second_rounds": rates,
        "padding_percent": 100 * (1 - real / padded),
        "first_steps_seconds": variant.first_steps_seconds,
        "capture_or_compile_seconds": variant.graph_seconds,
        "peak_allocated_mib": round(variant.peak_allocated_mib, 1),
        "peak_reserved_mib": round(variant.peak_reserved_mib, 1),
        "updates_made": sum(r["updates_made"] for r in variant.rounds),
        "steps": sum(r["steps"] for r in variant.rounds),
    }


def _ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float]:
    rate = {name: row["tgt_tokens_per_second"] for name, row in summary.items()}
    pairs = [("cuda_graph", "eager"), ("cuda_graph", "pad_to_max"), ("compile", "eager"),
             ("eager", "pad_to_max"), ("cuda_graph", "cuda_graph_sync"), ("eager", "eager_sync"),
             ("compile", "compile_sync")]  # fmt: skip
    return {f"{a}_over_{b}": rate[a] / rate[b] for a, b in pairs if a in rate and b in rate}


def _print_table(
    summary: dict[str, dict[str, Any]], ratios: dict[str, float], memory: dict[str, Any] | None
) -> None:
    print("\n| variant | real target tokens/s (median) | padding % | capture/compile s | "
          "peak allocated MiB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for name, row in summary.items():
        print(
            f"| {name} | {row['tgt_tokens_per_second']:.0f} | {row['padding_percent']:.2f} | "
            f"{row['capture_or_compile_seconds']:.1f} | {row['peak_allocated_mib']:.0f} |"
        )
    print()
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x")
    if memory is not None:
        print("\nmemory of captured graphs (peak, MiB allocated / reserved):")
        for name in ("largest_key_alone", "all_keys_shared_pool", "all_keys_pool_per_graph"):
            row = memory[name]
            print(f"  {name}: {row['peak_allocated_mib']} / {row['peak_reserved_mib']}")
        print(
            f"  shared pool / largest key: {memory['shared_over_largest_allocated']:.3f}x "
            f"allocated, {memory['shared_over_largest_reserved']:.3f}x reserved"
        )


def _report(
    summary: dict[str, Any],
    ratios: dict[str, float],
    memory: dict[str, Any] | None,
    args: Any,
    config: TrainConfig,
    device: torch.device,
    num_keys: int,
) -> dict[str, Any]:
    return {
        "benchmark": "train-executors",
        "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
        },
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "bucket_keys": num_keys,
        "token_budget": config.bucketing.token_budget,
        "bf16": config.trainer.bf16 and device.type == "cuda",
        "model": config.model.__dict__,
        "results": summary,
        "ratios": ratios,
        "graph_memory": memory,
    }


def _compare_ranks(args: Any, overrides: list[str]) -> int:
    """``--ranks N``: whole training runs, N ranks against one process (see the docstring)."""
    ranks, threads = args.ranks, args.threads
    if ranks < 2 or threads % ranks:
        raise SystemExit(f"--ranks must be >= 2 and divide --threads ({threads}), got {ranks}")
    with initialize_config_module(config_module="nmtbucket.conf", version_base=None):
        budget = to_train_config(compose("train", overrides=overrides)).bucketing.token_budget
    common = [
        *overrides,
        f"trainer.max_updates={args.updates}",
        "trainer.max_minutes=0",
        "trainer.validate_every=0",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.device=cpu",
        "resume=false",
    ]
    whole_batch = [f"bucketing.token_budget={budget * ranks}", f"bucketing.batch_multiple={ranks}"]
    train = [sys.executable, "-m", "nmtbucket.cli.train"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun += ["--nproc_per_node", str(ranks), "-m", "nmtbucket.cli.train"]
    variants = {
        "one_process": (train, whole_batch, threads),
        "ranks": (torchrun, [], threads // ranks),
        "one_thread": (train, whole_batch, threads // ranks),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            for name, (command, extra, run_threads) in variants.items():
                run_dir = Path(scratch) / f"{name}-{round_index}"
                env = dict(os.environ, OMP_NUM_THREADS=str(run_threads))
                full = [*command, *common, *extra, f"run_dir={run_dir}"]
                subprocess.run(full, env=env, check=True, capture_output=True)
                results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
                rates[name].append(results["real_tgt_tokens_per_second"])
                print(
                    f"round {round_index + 1} {name}: {rates[name][-1]:.0f} tok/s", file=sys.stderr
                )
    medians = {name: statistics.median(values) for name, values in rates.items()}
    summary = {
        "tgt_tokens_per_second": medians,
        "ranks_over_one_process": medians["ranks"] / medians["one_process"],
        "scaling_efficiency": medians["ranks"] / (ranks * medians["one_thread"]),
    }
    print("\n| run | threads | real target tokens/s (median) |\n|---|---:|---:|")
    for name, (_, _, run_threads) in variants.items():
        label = f"{ranks} ranks" if name == "ranks" else f"one process ({name})"
        print(f"| {label} | {run_threads} each | {medians[name]:.0f} |")
    print(
        f"\nranks / one process: {summary['ranks_over_one_process']:.2f}x; scaling efficiency "
        f"{summary['scaling_efficiency']:.2f}"
    )
    if args.json:
        report = {
            "benchmark": "train-ranks",
            "date": datetime.date.today().isoformat(),
            "command": " ".join(sys.argv),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "torch": torch.__version__,
            "ranks": ranks,
            "threads": threads,
            "updates_per_run": args.updates,
            "rounds": rates,
            **summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
