"""The training pipeline both tasks share: from a typed :class:`TrainConfig` to a trained,
scored model and its ``results.json``. A task supplies only what differs (its data, batches,
``sym_gen``, step and evaluators, its own run files and scored splits); the run directory, the
model and its executors, the optimizer, the Trainer, the results and the summary are here."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from nmtbucket.bucketing.keys import LengthKey
from nmtbucket.bucketing.module import BucketingModule, SymGen
from nmtbucket.bucketing.picture import PlotUnavailable, draw_plan
from nmtbucket.bucketing.plan import curve_key_counts, plan_buckets
from nmtbucket.config import TrainConfig
from nmtbucket.device import resolve_device
from nmtbucket.distributed import (
    Ranks,
    barrier,
    broadcast_parameters,
    end_process_group,
    rank_device,
    start_process_group,
)
from nmtbucket.executors.selection import build_executor_factory, resolve_executor
from nmtbucket.files import atomic_write_json, remove_leftover_temp_files
from nmtbucket.models import count_parameters
from nmtbucket.training.counters import TrainProgress
from nmtbucket.training.evaluation import SplitEvaluator, SplitScores
from nmtbucket.training.optim import build_optimization
from nmtbucket.training.run_directory import (
    holds_training_state,
    open_run_dir,
    set_aside_earlier_outputs,
    write_run_files,
)
from nmtbucket.training.run_lock import RunLock
from nmtbucket.training.step import TrainStep
from nmtbucket.training.trainer import TrainBatches, Trainer, upcoming_epoch

log = logging.getLogger(__name__)


@dataclass
class TaskSetup:
    """What a task hands the Trainer once its data is ready."""

    train_batches: TrainBatches
    sym_gen: SymGen
    batch_sizes: Mapping[LengthKey, int]  # training key -> rows per batch, in bucket order
    default_bucket_key: LengthKey  # the largest key, built first
    step: TrainStep
    valid_evaluator: SplitEvaluator
    train_lengths: torch.Tensor | None = None  # (N, d) per-stream lengths of the training
    # examples, for the bucket plan's picture (None: one key, nothing to draw)
    identity: dict[str, dict[str, str]] = field(default_factory=dict)
    """The files a resumed run must find unchanged, by what they are (``training source
    file``): ``{"path": ..., "sha256": ...}``."""


class PreparedTask(Protocol):
    """One kind of training run (translation, language modelling) with its data read and its
    buckets defined: what the pipeline trains (:attr:`setup`), then scores."""

    setup: TaskSetup

    def write_run_files(self, run_dir: Path) -> None:
        """The task's own files beside the checkpoints (tokenizer models, a vocabulary)."""
        ...

    def score(self, model: BucketingModule) -> dict[str, SplitScores]:
        """The held-out splits scored after training, by role (``test``, ``valid``)."""
        ...

    def results(self) -> dict[str, Any]:
        """The task's own entries of ``results.json`` (what its data preparation skipped)."""
        ...


PrepareTask = Callable[[TrainConfig, torch.device, Ranks], PreparedTask]
"""Reads a task's data, defines its buckets and batches (this rank's share of each step),
builds its ``sym_gen`` (the random generators are seeded before)."""


def run_pipeline(config: TrainConfig, prepare_task: PrepareTask) -> dict[str, Any]:
    """Train and score as ``config`` says (checked by ``check_choices``); returns what
    ``results.json`` holds (an empty dict on ranks other than 0, which neither score nor
    write). Under torchrun, every rank runs this with its share of every step."""
    ranks = Ranks.from_environment()
    device = rank_device(ranks, resolve_device(config.trainer.device))
    start_process_group(ranks, device, config.trainer.distributed_timeout_seconds)
    try:
        started = time.monotonic()
        run_dir = open_run_dir(config)
        with RunLock(run_dir) if ranks.is_main else nullcontext():  # rank 0's holds for all
            if ranks.is_main:
                for folder in (run_dir, run_dir / "checkpoints"):
                    for leftover in remove_leftover_temp_files(folder):
                        log.warning("removed %s, left by a process killed while writing", leftover)
                if not holds_training_state(run_dir):
                    set_aside_earlier_outputs(run_dir)
            return _train_and_score(config, prepare_task, ranks, device, run_dir, started)
    finally:
        end_process_group()


def _train_and_score(
    config: TrainConfig,
    prepare_task: PrepareTask,
    ranks: Ranks,
    device: torch.device,
    run_dir: Path,
    started: float,
) -> dict[str, Any]:
    random.seed(config.trainer.seed)
    torch.manual_seed(config.trainer.seed)

    if not ranks.is_main:
        barrier(ranks)  # rank 0 prepares the data first (tokenizers, the encoded-data cache) ...
    task = prepare_task(config, device, ranks)
    if ranks.is_main:
        barrier(ranks)  # ... which the others then read
    setup = task.setup
    model = _build_model(config, setup, device, ranks)
    if ranks.distributed:
        torch.manual_seed(config.trainer.seed + ranks.rank)  # each rank its own dropout masks
    batches = setup.train_batches
    optimization = build_optimization(
        model.parameters(),
        config.trainer,
        model.executor_factory.captures_update,
        lambda: upcoming_epoch(batches),
        ranks,
    )
    trainer = Trainer(
        model, batches, setup.valid_evaluator, setup.step, optimization, config.trainer,
        run_dir, device, ranks, setup.identity,
    )  # fmt: skip
    if config.resume:
        trainer.resume_if_possible()  # checks the data first: nothing is overwritten before
    barrier(ranks)  # every rank has read the state before rank 0 writes files
    if ranks.is_main:
        write_run_files(run_dir, config, setup.batch_sizes)
        task.write_run_files(run_dir)
        if setup.train_lengths is not None and config.trainer.plot_buckets:
            _draw_bucket_plan(config, setup.train_lengths, run_dir)
    progress = trainer.fit()
    log.info("training stopped: %s", progress.stop_reason)
    if not ranks.is_main:
        return {}

    weights = trainer.load_best_weights()
    scores = task.score(model)
    results = {
        **_run_results(config, progress, batches, weights, time.monotonic() - started),
        "device": str(device),
        "parameters": count_parameters(model),
        **{
            key: value
            for role, split in scores.items()
            for key, value in split.results(role).items()
        },
        **task.results(),
    }
    atomic_write_json(run_dir / "results.json", results)
    _print_summary(results, scores, run_dir)
    return results


def _draw_bucket_plan(config: TrainConfig, lengths: torch.Tensor, run_dir: Path) -> None:
    """``buckets.png``, as ``nmtbucket-buckets`` draws it, when matplotlib is installed."""
    keys = curve_key_counts(config.bucketing)
    plan = plan_buckets(lengths, config.bucketing, keys, seed=config.trainer.seed)
    try:
        path = draw_plan(plan, lengths, run_dir / "buckets.png", f"{config.name}: bucket plan")
        log.info("bucket plan: %s", path)
    except PlotUnavailable as missing:
        log.info("no buckets.png: %s", missing)


def _build_model(
    config: TrainConfig, setup: TaskSetup, device: torch.device, ranks: Ranks
) -> BucketingModule:
    executors = build_executor_factory(config.trainer, device, len(setup.batch_sizes))
    model = BucketingModule(setup.sym_gen, setup.default_bucket_key, executors).to(device)
    broadcast_parameters(model, ranks)  # equal from the same seed already; this makes sure
    log.info(
        "model: %s with %s parameters; %d bucket keys, default %s; executor %s%s",
        config.model.arch,
        f"{count_parameters(model):,}",
        len(setup.batch_sizes),
        setup.default_bucket_key,
        resolve_executor(config.trainer.executor, device),
        f"; {ranks.world_size} ranks" if ranks.distributed else "",
    )
    return model


def _run_results(
    config: TrainConfig,
    progress: TrainProgress,
    batches: TrainBatches,
    weights: str,
    wall_seconds: float,
) -> dict[str, Any]:
    """The entries of ``results.json`` every task has, under the same names."""
    seconds = max(progress.train_seconds, 1e-9)
    return {
        "name": config.name,
        "task": config.data.task,
        "test_weights": weights,
        "updates": progress.updates,
        "batches": progress.batches,
        "epochs": round(batches.epoch + batches.position / max(len(batches), 1), 3),
        "stop_reason": progress.stop_reason,
        "best_valid_score": progress.best_score,
        "early_stopping_metric": config.trainer.early_stopping_metric,
        "wall_seconds": wall_seconds,
        "train_seconds": progress.train_seconds,
        "real_tgt_tokens_per_second": progress.tgt_tokens / seconds,
        "real_tokens_per_second": progress.real_tokens / seconds,
        "padding_percent": progress.padding_percent,
        "nonfinite_updates": progress.nonfinite_updates,
    }


def _print_summary(results: dict[str, Any], scores: dict[str, SplitScores], run_dir: Path) -> None:
    lines = [f"run {results['name']} finished: {results['stop_reason']}"]
    for role, split in scores.items():
        first, *more = split.summary()
        lines.append(f"  {role} ({split.split}, {results['test_weights']} weights): {first}")
        lines += [f"  {line}" for line in more]
    lines += [
        f"  updates {results['updates']}  epochs {results['epochs']}  "
        f"wall {results['wall_seconds']:.0f} s  train {results['train_seconds']:.0f} s  "
        f"{results['real_tgt_tokens_per_second']:.0f} target tokens/s  "
        f"padding {results['padding_percent']:.2f} %",
        f"  results: {run_dir / 'results.json'}",
    ]
    print("\n".join(lines), flush=True)
