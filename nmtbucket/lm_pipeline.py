"""From a typed :class:`TrainConfig` with ``data.task: lm`` to a trained language model and its
perplexities: read the word-level corpus, batch it (stream or sentences), build the model
through ``sym_gen`` with one length key per graph, train, score valid and test with the best
checkpoint, write ``results.json``. :func:`nmtbucket.pipeline.run_training` sends LM configs
here."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmtbucket.bucketing.executor_choice import build_executor_factory, resolve_executor
from nmtbucket.bucketing.iterator import BucketBatchSampler
from nmtbucket.bucketing.keys import key_lengths
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.scheme import BucketScheme, build_bucket_scheme
from nmtbucket.checkpoint import atomic_write_json
from nmtbucket.config import TrainConfig
from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.data.lm_corpus import LanguageModelCorpus
from nmtbucket.data.sentence_batches import SentenceBatches, sentence_lengths
from nmtbucket.data.stream import StreamBatches
from nmtbucket.device import resolve_device
from nmtbucket.errors import NmtBucketError
from nmtbucket.evaluator import SplitScores, eval_scheme
from nmtbucket.lm_evaluator import PerplexityEvaluator
from nmtbucket.lm_step import LanguageModelStep
from nmtbucket.models import count_parameters
from nmtbucket.models.lm import build_language_model, lm_sym_gen
from nmtbucket.run_start import open_run_dir
from nmtbucket.training import TrainBatches, Trainer

log = logging.getLogger(__name__)

EVAL_SPLITS = ("valid", "test")


@dataclass
class LanguageModelData:
    """The batches of one run: training batches, each held-out split's fixed batches, and the
    bucket keys with their rows per batch (one key in stream mode)."""

    train: TrainBatches
    held_out: dict[str, list[LMBatch]]
    batch_sizes: dict[int, int]  # training key -> rows per batch
    skipped_train_sentences: int = 0  # sentence mode: longer than the largest key


def run_language_model_training(config: TrainConfig) -> dict[str, Any]:
    """Train and evaluate the language model ``config`` describes; returns what
    ``results.json`` holds."""
    started = time.monotonic()
    run_dir = open_run_dir(config)
    device = resolve_device(config.trainer.device)
    random.seed(config.trainer.seed)
    torch.manual_seed(config.trainer.seed)

    corpus = LanguageModelCorpus.load(config.data, log=log.info)
    log.info("%s", corpus.describe())
    data = batch_corpus(corpus, config)
    default_key = max(data.batch_sizes)
    core = build_language_model(config.model, len(corpus.vocabulary))
    executors = build_executor_factory(config.trainer, device, len(data.batch_sizes))
    model = BucketingModule(lm_sym_gen(core), default_key, executors).to(device)
    log.info(
        "model: %s with %s parameters; %s mode, bucket keys %s, default %d; executor %s",
        config.model.arch,
        f"{count_parameters(model):,}",
        config.data.lm.mode,
        sorted(data.batch_sizes),
        default_key,
        resolve_executor(config.trainer.executor, device),
    )
    _write_run_files(config, corpus, data, run_dir)

    evaluators = {
        split: PerplexityEvaluator(split, data.held_out[split], device, config.trainer.progress)
        for split in EVAL_SPLITS
    }
    step = LanguageModelStep(config.trainer.label_smoothing)
    trainer = Trainer(
        model, data.train, evaluators["valid"], config.trainer, run_dir, device, step=step
    )
    if config.resume:
        trainer.resume_if_possible()
    progress = trainer.fit()
    log.info("training stopped: %s", progress.stop_reason)

    weights = trainer.load_best_weights()
    scores = {split: evaluators[split].evaluate(model) for split in EVAL_SPLITS}
    results = _results(config, trainer, scores, weights, time.monotonic() - started)
    results["device"] = str(device)
    results["parameters"] = count_parameters(model)
    results["train_sentences_skipped"] = data.skipped_train_sentences
    atomic_write_json(run_dir / "results.json", results)
    _print_summary(results, run_dir)
    return results


def batch_corpus(corpus: LanguageModelCorpus, config: TrainConfig) -> LanguageModelData:
    """The batches ``data.lm.mode`` asks for. Held-out batches cover every token of their
    split: stream batches are padded, never trimmed; sentence keys grow to the longest line."""
    lm = config.data.lm
    if lm.mode == "stream":
        train = StreamBatches(corpus.stream("train"), lm.batch_size, lm.bptt)
        held_out = {}
        for split in EVAL_SPLITS:
            stream = StreamBatches(corpus.stream(split), lm.eval_batch_size, lm.bptt)
            held_out[split] = [stream.batch(i) for i in range(len(stream))]
        return LanguageModelData(train, held_out, {lm.bptt: lm.batch_size})
    if lm.mode != "sentences":
        raise NmtBucketError(f"data.lm.mode must be stream or sentences, got {lm.mode!r}")
    lengths = sentence_lengths(corpus.splits["train"])  # (N, 1)
    scheme = build_bucket_scheme(lengths, config.bucketing)
    sampler = BucketBatchSampler(
        lengths,
        scheme.buckets,
        scheme.batch_sizes,
        overlong=config.bucketing.overlong,  # type: ignore[arg-type]
        seed=config.trainer.seed,
    )
    log.info("buckets: %s", sampler.assignment.summary())
    sentences = SentenceBatches(corpus.splits["train"], sampler, corpus.eos_id)
    held_out = {
        split: _held_out_sentence_batches(corpus, split, scheme, config.bucketing.token_budget)
        for split in EVAL_SPLITS
    }
    sizes = {key_lengths(key)[0]: size for key, size in scheme.batch_sizes.items()}
    return LanguageModelData(sentences, held_out, sizes, sampler.assignment.num_skipped)


def _held_out_sentence_batches(
    corpus: LanguageModelCorpus, split: str, scheme: BucketScheme, token_budget: int
) -> list[LMBatch]:
    """One epoch of a held-out split in fixed order, with a key for its longest lines."""
    sentences = corpus.splits[split]
    lengths = sentence_lengths(sentences)  # (N, 1)
    keys = eval_scheme(scheme, lengths, token_budget)
    sampler = BucketBatchSampler(
        lengths, keys.buckets, keys.batch_sizes, overlong="error", shuffle=False
    )
    return list(SentenceBatches(sentences, sampler, corpus.eos_id))


def _write_run_files(
    config: TrainConfig, corpus: LanguageModelCorpus, data: LanguageModelData, run_dir: Path
) -> None:
    """The resolved config, the vocabulary (one word per line, by id) and the bucket keys."""
    atomic_write_json(run_dir / "config.json", dataclasses.asdict(config))
    vocab = run_dir / "vocab.txt"
    vocab.write_text("".join(f"{word}\n" for word in corpus.vocabulary.words), encoding="utf-8")
    keys = [[key, size] for key, size in sorted(data.batch_sizes.items())]
    atomic_write_json(run_dir / "buckets.json", keys)


def _results(
    config: TrainConfig,
    trainer: Trainer,
    scores: dict[str, SplitScores],
    weights: str,
    wall_seconds: float,
) -> dict[str, Any]:
    progress = trainer.progress
    train_iter = trainer.train_iter
    seconds = max(progress.train_seconds, 1e-9)
    return {
        "name": config.name,
        "task": "lm",
        "mode": config.data.lm.mode,
        "test_perplexity": scores["test"].perplexity,
        "valid_perplexity": scores["valid"].perplexity,
        "test_loss": scores["test"].loss,
        "valid_loss": scores["valid"].loss,
        "test_tokens": scores["test"].num_tokens,
        "valid_tokens": scores["valid"].num_tokens,
        "test_weights": weights,
        "updates": progress.updates,
        "epochs": round(train_iter.epoch + train_iter.position / max(len(train_iter), 1), 3),
        "stop_reason": progress.stop_reason,
        "best_valid_score": progress.best_score,
        "early_stopping_metric": config.trainer.early_stopping_metric,
        "wall_seconds": wall_seconds,
        "train_seconds": progress.train_seconds,
        "train_tokens_per_second": progress.tgt_tokens / seconds,
        "padding_percent": progress.padding_percent,
        "nonfinite_updates": progress.nonfinite_updates,
    }


def _print_summary(results: dict[str, Any], run_dir: Path) -> None:
    lines = [
        f"run {results['name']} finished: {results['stop_reason']}",
        f"  perplexity ({results['test_weights']} weights): "
        f"test {results['test_perplexity']:.2f} ({results['test_tokens']} tokens)  "
        f"valid {results['valid_perplexity']:.2f} ({results['valid_tokens']} tokens)",
        f"  updates {results['updates']}  epochs {results['epochs']}  "
        f"wall {results['wall_seconds']:.0f} s  train {results['train_seconds']:.0f} s  "
        f"{results['train_tokens_per_second']:.0f} tokens/s  "
        f"padding {results['padding_percent']:.2f} %",
        f"  results: {run_dir / 'results.json'}",
    ]
    print("\n".join(lines), flush=True)
