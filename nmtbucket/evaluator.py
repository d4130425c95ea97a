"""Scores a model on a held-out split (validation or test): teacher-forced loss and perplexity
over every target token, then greedy translation of every source line, detokenised and scored
with sacrebleu BLEU and chrF against the raw references. No line is ever dropped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch

from nmtbucket.bucketing.batching import define_batch_sizes
from nmtbucket.bucketing.iterator import BucketBatchSampler, BucketIterator
from nmtbucket.bucketing.keys import LengthKey, LengthPair, key_lengths, tokens_per_row
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.scheme import BucketScheme
from nmtbucket.config import SearchConfig
from nmtbucket.data.prepare import EvalSplit
from nmtbucket.data.tokenizer import PAD_ID, SentencePieceTokenizer
from nmtbucket.errors import NmtBucketError
from nmtbucket.evaluation import perplexity, translation_scores
from nmtbucket.loss import label_smoothed_cross_entropy
from nmtbucket.models import seq2seq_core
from nmtbucket.progress import Progress
from nmtbucket.search import greedy_search, max_output_lengths


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
        extra = LengthPair(*(max(d, k) for d, k in zip(data_max, largest, strict=True)))
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
        if search.beam_size != 1:
            raise NmtBucketError(
                f"search.beam_size={search.beam_size}: only greedy search (beam_size=1) is built "
                "so far; beam search arrives with nmtbucket-translate"
            )
        self.split = split
        lengths = split.dataset.lengths  # (N, 2)
        self.scheme = eval_scheme(scheme, lengths, token_budget)
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
                scores.hypotheses = self.translate(partial(greedy_search, seq2seq_core(model)))
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
            batch = batch.to(self.device)
            assert batch.tgt is not None
            logits = model(batch)  # (B, T, V)
            terms = label_smoothed_cross_entropy(logits, batch.tgt, PAD_ID, 0.0)
            nll_sum += float(terms.nll_sum)
            num_tokens += int(terms.num_tokens)
        return nll_sum, num_tokens

    def translate(
        self, search_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], list[list[int]]]
    ) -> list[str]:
        """Detokenised output for every source line, in input order. Lines are sorted by length
        and batched so that rows x (source + output length) stays within the token budget."""
        sources = self.split.dataset.streams[0]
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        outputs: list[str] = [""] * len(sources)
        with Progress(
            len(order), f"translate {self.split.name}", enabled=self.progress, unit="sent"
        ) as bar:
            for chunk in self._chunks(order):
                src_lengths = torch.tensor([len(sources[i]) for i in chunk])  # (B,)
                src = torch.full((len(chunk), int(src_lengths.max())), PAD_ID, dtype=torch.int64)
                for row, index in enumerate(chunk):
                    src[row, : src_lengths[row]] = sources[index]
                limits = self._max_output_lengths(src_lengths)
                ids = search_fn(
                    src.to(self.device), src_lengths.to(self.device), limits.to(self.device)
                )
                for index, tokens in zip(chunk, ids, strict=True):
                    outputs[index] = self.tgt_tokenizer.decode(tokens)
                bar.update(len(chunk))
        return outputs

    def _max_output_lengths(self, src_lengths: torch.Tensor) -> torch.Tensor:
        return max_output_lengths(
            src_lengths,
            self.search.max_output_ratio,
            self.search.max_output_extra,
            self.search.max_output_len,
        )

    def _chunks(self, order: list[int]) -> list[list[int]]:
        """Consecutive runs of ``order`` (ascending source length, so a run's last row is its
        longest) whose rows x (longest source + its output limit) fit ``search.token_budget``."""
        src_lengths = self.split.dataset.streams[0].lengths  # (N,)
        row_cost = (src_lengths + self._max_output_lengths(src_lengths)).tolist()  # (N,)
        chunks: list[list[int]] = [[]]
        for index in order:
            if chunks[-1] and (len(chunks[-1]) + 1) * row_cost[index] > self.search.token_budget:
                chunks.append([])
            chunks[-1].append(index)
        return [chunk for chunk in chunks if chunk]
