"""Language modelling as a task of the shared training pipeline: a word-level corpus, batched as
one token stream (truncated back-propagation, one key) or as sentences in 1-D buckets, the LSTM
language model's ``sym_gen`` and step, and perplexity over every token of valid and test."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmtbucket.bucketing.keys import LengthKey, key_lengths
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.sampler import BucketBatchSampler
from nmtbucket.bucketing.scheme import BucketScheme, build_bucket_scheme, eval_scheme
from nmtbucket.config import TrainConfig
from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.data.lm_corpus import LanguageModelCorpus
from nmtbucket.data.sentence_batches import SentenceBatches, sentence_lengths
from nmtbucket.data.stream import StreamBatches
from nmtbucket.distributed import Ranks
from nmtbucket.files import atomic_write_text
from nmtbucket.lm.evaluator import PerplexityEvaluator
from nmtbucket.lm.step import LanguageModelStep
from nmtbucket.models.lm import build_language_model, lm_sym_gen
from nmtbucket.training.evaluation import SplitScores
from nmtbucket.training.pipeline import TaskSetup, run_pipeline
from nmtbucket.training.trainer import TrainBatches

log = logging.getLogger(__name__)

EVAL_SPLITS = ("valid", "test")


def run_language_model_training(config: TrainConfig) -> dict[str, Any]:
    """Train and score the language model ``config`` describes; returns ``results.json``."""
    return run_pipeline(config, prepare_language_model)


@dataclass
class LanguageModelData:
    """The batches of one run: training batches, each held-out split's fixed batches, and the
    bucket keys with their rows per batch (one key in stream mode)."""

    train: TrainBatches
    held_out: dict[str, list[LMBatch]]
    batch_sizes: dict[LengthKey, int]  # training key -> rows per batch, keys ascending
    skipped_train_sentences: int = 0  # sentence mode: longer than the largest key
    train_lengths: torch.Tensor | None = None  # sentence mode: (N, 1) tokens per sentence


@dataclass
class LanguageModelTask:
    """Language modelling, prepared: a :class:`~nmtbucket.training.pipeline.PreparedTask`."""

    config: TrainConfig
    corpus: LanguageModelCorpus
    data: LanguageModelData
    evaluators: dict[str, PerplexityEvaluator]
    setup: TaskSetup

    def write_run_files(self, run_dir: Path) -> None:
        """The vocabulary, one word per line by id."""
        words = self.corpus.vocabulary.words
        atomic_write_text(run_dir / "vocab.txt", "".join(f"{w}\n" for w in words))

    def score(self, model: BucketingModule) -> dict[str, SplitScores]:
        """Perplexity over every token of test and valid."""
        return {split: self.evaluators[split].evaluate(model) for split in ("test", "valid")}

    def results(self) -> dict[str, Any]:
        return {
            "mode": self.config.data.lm.mode,
            "train_sentences_skipped": self.data.skipped_train_sentences,
        }


def prepare_language_model(
    config: TrainConfig, device: torch.device, ranks: Ranks | None = None
) -> LanguageModelTask:
    """Read the corpus, batch it as ``data.lm.mode`` asks (this rank's share of each step),
    build ``sym_gen`` and evaluators."""
    corpus = LanguageModelCorpus.load(config.data, log=log.info)
    log.info("%s", corpus.describe())
    data = batch_corpus(corpus, config, ranks or Ranks())
    log.info("%s mode, bucket keys %s", config.data.lm.mode, sorted(data.batch_sizes))
    core = build_language_model(config.model, len(corpus.vocabulary))
    evaluators = {
        split: PerplexityEvaluator(split, data.held_out[split], device, config.trainer.progress)
        for split in EVAL_SPLITS
    }
    setup = TaskSetup(
        train_batches=data.train,
        sym_gen=lm_sym_gen(core),
        batch_sizes=data.batch_sizes,
        default_bucket_key=max(data.batch_sizes),
        step=LanguageModelStep(config.trainer.label_smoothing),
        valid_evaluator=evaluators["valid"],
        train_lengths=data.train_lengths,
        identity=corpus.identity,
    )
    return LanguageModelTask(config, corpus, data, evaluators, setup)


def batch_corpus(
    corpus: LanguageModelCorpus, config: TrainConfig, ranks: Ranks | None = None
) -> LanguageModelData:
    """The batches ``data.lm.mode`` (``stream`` or ``sentences``) asks for, ``ranks``' share of
    the training steps (stream mode: ``data.lm.batch_size`` columns in all, split between the
    ranks; sentences: each rank's rows per key). Held-out batches cover every token of their
    split: stream batches are padded, never trimmed; sentence keys grow to the longest line."""
    lm = config.data.lm
    ranks = ranks or Ranks()
    if lm.mode == "stream":
        train = StreamBatches(
            corpus.stream("train"),
            lm.batch_size,
            lm.bptt,
            rank=ranks.rank,
            world_size=ranks.world_size,
        )
        held_out = {}
        for split in EVAL_SPLITS:
            stream = StreamBatches(corpus.stream(split), lm.eval_batch_size, lm.bptt)
            held_out[split] = [stream.batch(i) for i in range(len(stream))]
        return LanguageModelData(train, held_out, {lm.bptt: train.batch_size})
    lengths = sentence_lengths(corpus.splits["train"])  # (N, 1)
    scheme = build_bucket_scheme(lengths, config.bucketing)
    sampler = BucketBatchSampler(
        lengths,
        scheme.buckets,
        scheme.batch_sizes,
        overlong=config.bucketing.overlong,  # type: ignore[arg-type]
        seed=config.trainer.seed,
        rank=ranks.rank,
        world_size=ranks.world_size,
    )
    log.info("buckets: %s", sampler.assignment.summary())
    sentences = SentenceBatches(corpus.splits["train"], sampler, corpus.eos_id)
    held_out = {
        split: _held_out_sentence_batches(corpus, split, scheme, config.bucketing.token_budget)
        for split in EVAL_SPLITS
    }
    sizes: dict[LengthKey, int] = {
        key_lengths(key)[0]: scheme.batch_sizes[key] for key in sorted(scheme.buckets)
    }
    skipped = sampler.assignment.num_skipped
    return LanguageModelData(sentences, held_out, sizes, skipped, lengths)


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
