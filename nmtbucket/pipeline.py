"""From a typed :class:`TrainConfig` to a trained, evaluated model: prepare the data, choose the
buckets, build the model through ``sym_gen``, train, score the test split, write ``results.json``.
This is what ``nmtbucket-train`` runs once Hydra has composed the config."""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from nmtbucket.bucketing.executor_choice import build_executor_factory, resolve_executor
from nmtbucket.bucketing.iterator import BucketBatchSampler, BucketIterator
from nmtbucket.bucketing.keys import key_lengths
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.scheme import BucketScheme, build_bucket_scheme
from nmtbucket.checkpoint import atomic_write_json
from nmtbucket.config import TrainConfig, check_choices
from nmtbucket.data.prepare import PreparedData, prepare_data
from nmtbucket.data.tokenizer import PAD_ID
from nmtbucket.device import resolve_device
from nmtbucket.evaluator import Evaluator, SplitScores
from nmtbucket.lm_pipeline import run_language_model_training
from nmtbucket.models import build_sym_gen, count_parameters
from nmtbucket.run_start import open_run_dir
from nmtbucket.training import Trainer, TrainProgress

log = logging.getLogger(__name__)


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Train and evaluate as ``config`` says; returns what ``results.json`` holds. A language
    model (``data.task: lm``) goes to :func:`run_language_model_training`."""
    started = time.monotonic()
    check_choices(config)
    if config.data.task == "lm":
        return run_language_model_training(config)
    run_dir = open_run_dir(config)
    device = resolve_device(config.trainer.device)
    random.seed(config.trainer.seed)
    torch.manual_seed(config.trainer.seed)

    data = prepare_data(config.data, progress=config.trainer.progress, log=log.info)
    log.info("%s", data.describe())
    scheme = build_bucket_scheme(data.train.lengths, config.bucketing)
    sampler = BucketBatchSampler(
        data.train.lengths,
        scheme.buckets,
        scheme.batch_sizes,
        overlong=config.bucketing.overlong,  # type: ignore[arg-type]
        seed=config.trainer.seed,
    )
    log.info("buckets: %s", sampler.assignment.summary())
    train_iter = BucketIterator(data.train, sampler, PAD_ID)
    model = _build_model(config, data, scheme, device)
    _write_run_files(config, data, scheme, run_dir)

    evaluator = _evaluator(config, data, scheme, device, "valid")
    trainer = Trainer(model, train_iter, evaluator, config.trainer, run_dir, device)
    if config.resume:
        trainer.resume_if_possible()
    progress = trainer.fit()
    log.info("training stopped: %s", progress.stop_reason)

    test_scores, weights = _test(config, data, scheme, device, model, trainer)
    epochs = train_iter.epoch + train_iter.position / max(len(train_iter), 1)
    results = _results(config, progress, test_scores, weights, time.monotonic() - started)
    results["device"] = str(device)
    results["epochs"] = round(epochs, 3)
    stats = data.filter_stats
    results["train_pairs"] = stats.total
    results["train_pairs_skipped"] = {
        "empty": stats.empty,
        "too_long": stats.too_long,
        "length_ratio": stats.bad_ratio,
        "longer_than_largest_bucket": sampler.assignment.num_skipped,
    }
    atomic_write_json(run_dir / "results.json", results)
    _print_summary(results, run_dir)
    return results


def _build_model(
    config: TrainConfig, data: PreparedData, scheme: BucketScheme, device: torch.device
) -> BucketingModule:
    sym_gen = build_sym_gen(
        config.model, data.src_tokenizer.vocab_size, data.tgt_tokenizer.vocab_size
    )
    executors = build_executor_factory(config.trainer, device, len(scheme.buckets))
    model = BucketingModule(sym_gen, scheme.default_bucket_key, executors).to(device)
    log.info(
        "model: %s with %s parameters; %d bucket keys, default %s; executor %s",
        config.model.arch,
        f"{count_parameters(model):,}",
        len(scheme.buckets),
        scheme.default_bucket_key,
        resolve_executor(config.trainer.executor, device),
    )
    return model


def _evaluator(
    config: TrainConfig, data: PreparedData, scheme: BucketScheme, device: torch.device, split: str
) -> Evaluator:
    return Evaluator(
        data.valid if split == "valid" else data.test,
        scheme,
        config.bucketing.token_budget,
        data.tgt_tokenizer,
        config.search,
        device,
        progress=config.trainer.progress,
    )


def _test(
    config: TrainConfig,
    data: PreparedData,
    scheme: BucketScheme,
    device: torch.device,
    model: BucketingModule,
    trainer: Trainer,
) -> tuple[SplitScores, str]:
    """Score the test split with the best checkpoint's weights (the last ones if none)."""
    weights = trainer.load_best_weights()
    scores = _evaluator(config, data, scheme, device, "test").evaluate(model)
    hypotheses = Path(config.run_dir) / f"{data.test.name}.hyp.txt"
    hypotheses.write_text("".join(line + "\n" for line in scores.hypotheses), encoding="utf-8")
    return scores, weights


def _results(
    config: TrainConfig,
    progress: TrainProgress,
    test: SplitScores,
    weights: str,
    wall_seconds: float,
) -> dict[str, Any]:
    seconds = max(progress.train_seconds, 1e-9)
    return {
        "name": config.name,
        "test_split": test.split,
        "test_bleu": test.bleu,
        "test_chrf": test.chrf,
        "test_loss": test.loss,
        "test_perplexity": test.perplexity,
        "bleu_signature": test.bleu_signature,
        "chrf_signature": test.chrf_signature,
        "test_weights": weights,
        "updates": progress.updates,
        "batches": progress.batches,
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


def _write_run_files(
    config: TrainConfig, data: PreparedData, scheme: BucketScheme, run_dir: Path
) -> None:
    """The resolved config, sentencepiece models and bucket keys, beside the checkpoints."""
    atomic_write_json(run_dir / "config.json", dataclasses.asdict(config))
    atomic_write_json(
        run_dir / "buckets.json",
        [[*key_lengths(key), scheme.batch_sizes[key]] for key in scheme.buckets],
    )
    shutil.copyfile(data.src_tokenizer.model_path, run_dir / "src.spm.model")
    shutil.copyfile(data.tgt_tokenizer.model_path, run_dir / "tgt.spm.model")


def _print_summary(results: dict[str, Any], run_dir: Path) -> None:
    bleu = results["test_bleu"]
    chrf = results["test_chrf"]
    lines = [
        f"run {results['name']} finished: {results['stop_reason']}",
        f"  test ({results['test_split']}, {results['test_weights']} weights): "
        f"BLEU {bleu:.2f}  chrF {chrf:.2f}  perplexity {results['test_perplexity']:.2f}",
        f"  {results['bleu_signature']}",
        f"  updates {results['updates']}  wall {results['wall_seconds']:.0f} s  "
        f"train {results['train_seconds']:.0f} s  "
        f"{results['real_tgt_tokens_per_second']:.0f} target tokens/s  "
        f"padding {results['padding_percent']:.2f} %",
        f"  results: {run_dir / 'results.json'}",
    ]
    print("\n".join(lines), flush=True)
