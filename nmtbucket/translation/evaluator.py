"""Scores a translation model on a held-out split (validation or test): teacher-forced loss and
perplexity over every target token through the shared evaluation loop, then translation of
every source line through the :class:`~nmtbucket.translation.translator.Translator`'s decoding
(greedy or beam search, as ``search`` says), scored with sacrebleu BLEU and chrF against the raw
references. No line is ever dropped."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.sampler import BucketBatchSampler
from nmtbucket.bucketing.scheme import BucketScheme, eval_scheme
from nmtbucket.config import SearchConfig
from nmtbucket.constants import PAD_ID
from nmtbucket.data.batch import Batch
from nmtbucket.data.iterator import BucketIterator
from nmtbucket.data.prepare import EvalSplit
from nmtbucket.data.tokenizer import SentencePieceTokenizer
from nmtbucket.models import seq2seq_core
from nmtbucket.search.decoding import (
    SearchFn,
    beam_search_fn,
    define_source_buckets,
    step_decoder,
)
from nmtbucket.training.evaluation import evaluation_mode, score_batches
from nmtbucket.training.loss import label_smoothed_cross_entropy
from nmtbucket.translation.scores import TranslationSplitScores, translation_scores
from nmtbucket.translation.translator import translate_sources


class Evaluator:
    """Evaluates models on one split with fixed batches (no shuffling): the training keys (plus
    one for longer lines), batch sizes from ``token_budget`` padded tokens. BLEU and chrF are
    computed ``with_bleu`` (a :class:`~nmtbucket.training.evaluation.SplitEvaluator`)."""

    def __init__(
        self,
        split: EvalSplit,
        scheme: BucketScheme,
        token_budget: int,
        tgt_tokenizer: SentencePieceTokenizer,
        search: SearchConfig,
        device: torch.device,
        progress: bool = True,
        with_bleu: bool = True,
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
        self.with_bleu = with_bleu

    def evaluate(self, model: BucketingModule) -> TranslationSplitScores:
        self.iterator.sampler.set_epoch(0)
        loss = score_batches(
            model, self.split.name, self.iterator, _batch_nll, self.device, self.progress
        )
        scores = TranslationSplitScores(**dataclasses.asdict(loss))
        if self.with_bleu:
            decoder = step_decoder(seq2seq_core(model), self.search, self.device)
            search_fn = beam_search_fn(decoder, self.search)
            with evaluation_mode(model):
                scores.hypotheses = self.translate(search_fn)
            bleu = translation_scores(scores.hypotheses, self.split.ref_lines)
            scores.bleu, scores.chrf = bleu.bleu, bleu.chrf
            scores.bleu_signature, scores.chrf_signature = bleu.bleu_signature, bleu.chrf_signature
        return scores

    def translate(self, search_fn: SearchFn) -> list[str]:
        """Detokenised best hypothesis for every source line, in input order, decoded in the
        source-length buckets of the evaluation keys."""
        sources = self.split.dataset.streams[0]
        found = translate_sources(
            [sources[i] for i in range(len(sources))],
            self,
            search_fn,
            f"translate {self.split.name}",
            self.progress,
        )
        return [translations[0].text for translations in found]


def _batch_nll(model: BucketingModule, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    nll_sum, num_tokens = model.eval_step(batch, teacher_forced_nll)
    return nll_sum, num_tokens


def teacher_forced_nll(module: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed negative log-likelihood of ``batch``'s targets and their count (0-d each):
    an evaluation function (captured per key under ``executor=cuda_graph``)."""
    logits = module(batch)  # (B, T, V)
    terms = label_smoothed_cross_entropy(logits, batch.tgt, PAD_ID, 0.0)
    return terms.nll_sum, terms.num_tokens
