"""Translation as a task of the shared training pipeline: parallel (or synthetic) data through
sentencepiece, 2-D buckets, the encoder-decoder's ``sym_gen`` and step, validation and test
scores with BLEU and chrF; the test split's translations are written beside the results."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.sampler import BucketBatchSampler
from nmtbucket.bucketing.scheme import BucketScheme, build_bucket_scheme
from nmtbucket.config import TrainConfig
from nmtbucket.constants import PAD_ID
from nmtbucket.data.iterator import BucketIterator
from nmtbucket.data.prepare import EvalSplit, PreparedData, prepare_data
from nmtbucket.distributed import Ranks
from nmtbucket.files import atomic_copy, atomic_write_text
from nmtbucket.models import build_sym_gen
from nmtbucket.training.evaluation import SplitScores
from nmtbucket.training.pipeline import TaskSetup, run_pipeline
from nmtbucket.translation.evaluator import Evaluator
from nmtbucket.translation.step import Seq2SeqStep

log = logging.getLogger(__name__)


def run_translation_training(config: TrainConfig) -> dict[str, Any]:
    """Train and score the encoder-decoder ``config`` describes; returns ``results.json``."""
    return run_pipeline(config, prepare_translation)


@dataclass
class TranslationTask:
    """Translation, prepared: a :class:`~nmtbucket.training.pipeline.PreparedTask`."""

    config: TrainConfig
    device: torch.device
    data: PreparedData
    scheme: BucketScheme
    skipped_long: int  # training pairs longer than the largest key
    setup: TaskSetup

    def write_run_files(self, run_dir: Path) -> None:
        """The source and target sentencepiece models, which translation needs."""
        atomic_copy(self.data.src_tokenizer.model_path, run_dir / "src.spm.model")
        atomic_copy(self.data.tgt_tokenizer.model_path, run_dir / "tgt.spm.model")

    def score(self, model: BucketingModule) -> dict[str, SplitScores]:
        """The test split with BLEU and chrF; its translations go to ``SPLIT.hyp.txt``."""
        test = self.data.test
        evaluator = held_out_evaluator(self.config, self.data, self.scheme, test, self.device)
        test_scores = evaluator.evaluate(model)
        hypotheses = Path(self.config.run_dir) / f"{test.name}.hyp.txt"
        lines = "".join(line + "\n" for line in test_scores.hypotheses)
        atomic_write_text(hypotheses, lines)
        return {"test": test_scores}

    def results(self) -> dict[str, Any]:
        stats = self.data.filter_stats
        return {
            "train_pairs": stats.total,
            "train_pairs_skipped": {
                "empty": stats.empty,
                "too_long": stats.too_long,
                "length_ratio": stats.bad_ratio,
                "longer_than_largest_bucket": self.skipped_long,
            },
        }


def prepare_translation(
    config: TrainConfig, device: torch.device, ranks: Ranks | None = None
) -> TranslationTask:
    """Read and encode the corpus, choose the buckets, build the sampler (this rank's share of
    every step: ``bucketing.token_budget`` is per rank) and ``sym_gen``."""
    ranks = ranks or Ranks()
    data = prepare_data(
        config.data, progress=config.trainer.progress and ranks.is_main, log=log.info
    )
    log.info("%s", data.describe())
    scheme = build_bucket_scheme(data.train.lengths, config.bucketing)
    sampler = BucketBatchSampler(
        data.train.lengths,
        scheme.buckets,
        scheme.batch_sizes,
        overlong=config.bucketing.overlong,  # type: ignore[arg-type]
        seed=config.trainer.seed,
        rank=ranks.rank,
        world_size=ranks.world_size,
    )
    log.info("buckets: %s", sampler.assignment.summary())
    vocab = (data.src_tokenizer.vocab_size, data.tgt_tokenizer.vocab_size)
    valid = held_out_evaluator(
        config, data, scheme, data.valid, device, with_bleu=config.trainer.validate_bleu
    )
    setup = TaskSetup(
        train_batches=BucketIterator(data.train, sampler, PAD_ID),
        sym_gen=build_sym_gen(config.model, *vocab),
        batch_sizes={key: scheme.batch_sizes[key] for key in scheme.buckets},
        default_bucket_key=scheme.default_bucket_key,
        step=Seq2SeqStep.for_device(config.trainer, device),
        valid_evaluator=valid,
        train_lengths=data.train.lengths,
        identity=data.identity,
    )
    return TranslationTask(config, device, data, scheme, sampler.assignment.num_skipped, setup)


def held_out_evaluator(
    config: TrainConfig,
    data: PreparedData,
    scheme: BucketScheme,
    split: EvalSplit,
    device: torch.device,
    with_bleu: bool = True,
) -> Evaluator:
    """The evaluator of ``split`` with the run's keys, budget, target tokenizer and search."""
    return Evaluator(
        split,
        scheme,
        config.bucketing.token_budget,
        data.tgt_tokenizer,
        config.search,
        device,
        progress=config.trainer.progress,
        with_bleu=with_bleu,
    )
