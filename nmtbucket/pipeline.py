"""From a typed :class:`TrainConfig` to a trained, evaluated model: prepare the data, choose the
buckets, build the model through ``sym_gen``, train, score the test split, write ``results.json``.
This is what ``nmtbucket-train`` runs once Hydra has composed the config."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from nmtbucket.bucketing.iterator import BucketBatchSampler, BucketIterator
from nmtbucket.bucketing.keys import key_lengths
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.scheme import BucketScheme, build_bucket_scheme
from nmtbucket.checkpoint import atomic_write_json, load_checkpoint
from nmtbucket.config import TrainConfig, check_choices
from nmtbucket.data.prepare import PreparedData, prepare_data
from nmtbucket.data.tokenizer import PAD_ID
from nmtbucket.device import resolve_device
from nmtbucket.errors import NmtBucketError
from nmtbucket.evaluator import Evaluator, SplitScores
from nmtbucket.models import build_sym_gen, count_parameters
from nmtbucket.training import Trainer, TrainProgress

log = logging.getLogger(__name__)


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Train and evaluate as ``config`` says; returns what ``results.json`` holds."""
    started = time.monotonic()
    check_choices(config)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = (run_dir / "checkpoints" / "last.pt").exists()
    if resuming and not config.resume:
        raise NmtBucketError(
            f"{run_dir} already holds a training run and resume=false; pick another run_dir "
            "(or name), or set resume=true to continue it"
        )
    if resuming:
        _check_resumable(run_dir, config)
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
    sampler_state = trainer.train_iter.sampler
    epochs = sampler_state.epoch + sampler_state.position / max(len(sampler_state), 1)
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


RESUME_FIXED = ("data", "model", "bucketing")
"""Config sections a resumed run must share with the run it continues."""


def _check_resumable(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume with other data, model or buckets; warn about other trainer settings
    (limits may change; optimizer settings come from the checkpoint)."""
    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    now = dataclasses.asdict(config)
    fixed = [k for s in RESUME_FIXED for k in _differences(saved.get(s), now[s], f"{s}.")]
    if fixed:
        raise NmtBucketError(
            f"cannot resume {run_dir}: these settings differ from the run it holds: "
            f"{', '.join(fixed)}; use another run_dir (or name) for a new run"
        )
    changed = _differences(saved.get("trainer"), now["trainer"], "trainer.")
    if changed:
        log.warning(
            "resuming with changed %s; limits and validation settings take effect, optimizer "
            "and schedule settings come from the checkpoint",
            ", ".join(changed),
        )


def _differences(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(old.keys() | new.keys())
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')} ({old!r} -> {new!r})"]


def _build_model(
    config: TrainConfig, data: PreparedData, scheme: BucketScheme, device: torch.device
) -> BucketingModule:
    sym_gen = build_sym_gen(
        config.model, data.src_tokenizer.vocab_size, data.tgt_tokenizer.vocab_size
    )
    model = BucketingModule(sym_gen, scheme.default_bucket_key).to(device)
    log.info(
        "model: %s with %s parameters; %d bucket keys, default %s",
        config.model.arch,
        f"{count_parameters(model):,}",
        len(scheme.buckets),
        scheme.default_bucket_key,
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
    best = trainer.keeper.best_path
    weights = "last"
    if best is not None:
        model.load_state_dict(load_checkpoint(best, map_location=device)["model"])
        weights = best.name
    else:
        log.warning("no best checkpoint: scoring the test split with the last weights")
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
