"""Scores a model on a held-out split (validation or test): teacher-forced loss and perplexity
over every target token, then translation of every source line (greedy or beam search, as
``search`` says), detokenised and scored with sacrebleu BLEU and chrF against the raw
references. No line is ever dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from nmtbucket.bucketing.batching import define_batch_sizes
from nmtbucket.bucketing.iterator import BucketBatchSampler, BucketIterator
from nmtbucket.bucketing.keys import LengthKey, key_lengths, make_length_key, tokens_per_row
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.scheme import BucketScheme
from nmtbucket.config import SearchConfig
from nmtbucket.data.batch import Batch
from nmtbucket.data.prepare import EvalSplit
from nmtbucket.data.tokenizer import PAD_ID, SentencePieceTokenizer
from nmtbucket.decoding import (
    SearchFn,
    beam_search_fn,
    decode_in_buckets,
    define_source_buckets,
)
from nmtbucket.errors import NmtBucketError
from nmtbucket.evaluation import perplexity, translation_scores
from nmtbucket.loss import label_smoothed_cross_entropy
from nmtbucket.models import seq2seq_core
from nmtbucket.progress import Progress


@dataclass
class SplitScores:
    """What one evaluation of a split measured."""

    split: str
    loss: float  # mean negative log-likelihood per target token (no label smoothing)
    perplexity: float
    num_tokens: int
    bleu: float | None = None
    chrf: float | None = None
    bleu_signature: str | None = None
    chrf_signature: str | None = None
    hypotheses: list[str] = field(default_factory=list, repr=False)

    def metric(self, name: str) -> float:
        """The value of ``name`` (bleu, chrf, loss or perplexity) for early stopping."""
        value = getattr(self, name)
        if value is None:
            raise NmtBucketError(
                f"metric {name!r} was not computed; set trainer.validate_bleu=true or stop "
                "early on loss or perplexity"
            )
        return float(value)

    def as_dict(self) -> dict[str, float | int | str | None]:
        """The numbers, for the metrics file."""
        return {
            "loss": self.loss,
            "perplexity": self.perplexity,
            "num_tokens": self.num_tokens,
            "bleu": self.bleu,
            "chrf": self.chrf,
        }


def eval_scheme(scheme: BucketScheme, lengths: torch.Tensor, token_budget: int) -> BucketScheme:
    """The training keys, plus one key covering the split's longest lines if they exceed the
    training default key: held-out lines are never skipped or truncated."""
    data_max = tuple(int(v) for v in lengths.max(dim=0).values)
    largest = key_lengths(scheme.default_bucket_key)
    buckets: list[LengthKey] = list(scheme.buckets)
    sizes = define_batch_sizes(buckets, token_budget)
    if any(d > k for d, k in zip(data_max, largest, strict=True)):
        extra = make_length_key([max(d, k) for d, k in zip(data_max, largest, strict=True)])
        buckets.append(extra)
        sizes[extra] = max(1, token_budget // tokens_per_row(extra))  # one row may exceed it
    return BucketScheme(tuple(buckets), sizes)


class Evaluator:
    """Evaluates models on one split with fixed batches (no shuffling): the training keys (plus
    one for longer lines), batch sizes from ``token_budget`` padded tokens."""

    def __init__(
        self,
        split: EvalSplit,
        scheme: BucketScheme,
        token_budget: int,
        tgt_tokenizer: SentencePieceTokenizer,
        search: SearchConfig,
        device: torch.device,
        progress: bool = True,
    ) -> None:
        self.split = split
        lengths = split.dataset.lengths  # (N, 2)
        self.scheme = eval_scheme(scheme, lengths, token_budget)
        self.src_buckets = define_source_buckets(self.scheme.buckets)
        sampler = BucketBatchSampler(
            lengths, self.scheme.buckets, self.scheme.batch_sizes, overlong="error", shuffle=False
        )
        self.iterator = BucketIterator(split.dataset, sampler, PAD_ID)
        self.tgt_tokenizer = tgt_tokenizer
        self.search = search
        self.device = device
        self.progress = progress

    @torch.inference_mode()
    def evaluate(self, model: BucketingModule, with_bleu: bool = True) -> SplitScores:
        was_training = model.training
        model.eval()
        try:
            nll_sum, num_tokens = self._teacher_forced_nll(model)
            scores = SplitScores(
                split=self.split.name,
                loss=nll_sum / max(num_tokens, 1),
                perplexity=perplexity(nll_sum, num_tokens),
                num_tokens=num_tokens,
            )
            if with_bleu:
                search_fn = beam_search_fn(seq2seq_core(model), self.search)
                scores.hypotheses = self.translate(search_fn)
                bleu = translation_scores(scores.hypotheses, self.split.ref_lines)
                scores.bleu, scores.chrf = bleu.bleu, bleu.chrf
                scores.bleu_signature, scores.chrf_signature = (
                    bleu.bleu_signature,
                    bleu.chrf_signature,
                )
        finally:
            model.train(was_training)
        return scores

    def _teacher_forced_nll(self, model: BucketingModule) -> tuple[float, int]:
        nll_sum, num_tokens = 0.0, 0
        self.iterator.sampler.set_epoch(0)
        for batch in self.iterator:
            batch_nll, batch_tokens = model.eval_step(batch.to(self.device), teacher_forced_nll)
            nll_sum += float(batch_nll)
            num_tokens += int(batch_tokens)
        return nll_sum, num_tokens

    def translate(self, search_fn: SearchFn) -> list[str]:
        """Detokenised best hypothesis for every source line, in input order, decoded in the
        source-length buckets of the evaluation keys."""
        sources = self.split.dataset.streams[0]
        with Progress(
            len(sources), f"translate {self.split.name}", enabled=self.progress, unit="sent"
        ) as bar:
            found = decode_in_buckets(
                [sources[i] for i in range(len(sources))],
                self.src_buckets,
                self.search,
                search_fn,
                self.device,
                bar,
            )
        return [self.tgt_tokenizer.decode(hypotheses[0].tokens) for hypotheses in found]


def teacher_forced_nll(module: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed negative log-likelihood of ``batch``'s targets and their count (0-d each):
    an evaluation function (captured per key under ``executor=cuda_graph``)."""
    assert batch.tgt is not None
    logits = module(batch)  # (B, T, V)
    terms = label_smoothed_cross_entropy(logits, batch.tgt, PAD_ID, 0.0)
    return terms.nll_sum, terms.num_tokens
