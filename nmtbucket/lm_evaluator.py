"""Perplexity of a language model on a held-out split, over every token of it, ``<eos>``
included, as the papers report it: ``exp`` of the mean negative log-likelihood per token."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.evaluation import perplexity
from nmtbucket.evaluator import SplitScores
from nmtbucket.loss import masked_cross_entropy
from nmtbucket.models.lm import LMState
from nmtbucket.progress import Progress


class PerplexityEvaluator:
    """Scores a split given as its fixed ``batches`` (stream batches, which carry the state from
    one to the next, or sentence batches, which start from zeros); a
    :class:`~nmtbucket.training.SplitEvaluator`."""

    def __init__(
        self,
        split: str,
        batches: Sequence[LMBatch],
        device: torch.device,
        progress: bool = True,
    ) -> None:
        self.split = split
        self.batches = batches
        self.device = device
        self.progress = progress

    @torch.inference_mode()
    def evaluate(self, model: BucketingModule, with_bleu: bool = False) -> SplitScores:
        """Loss and perplexity (``with_bleu`` is ignored: a language model has no BLEU)."""
        was_training = model.training
        model.eval()
        nll_sum, num_tokens = 0.0, 0
        state: LMState | None = None  # (num_layers, B, d_model) each
        try:
            with Progress(
                len(self.batches), f"score {self.split}", enabled=self.progress, unit="batch"
            ) as bar:
                for batch in self.batches:
                    batch = batch.to(self.device).with_carried_state(state)
                    batch_nll, batch_tokens, state = model.eval_step(batch, next_token_nll)
                    nll_sum += float(batch_nll)
                    num_tokens += int(batch_tokens)
                    bar.update(1)
        finally:
            model.train(was_training)
        return SplitScores(
            split=self.split,
            loss=nll_sum / max(num_tokens, 1),
            perplexity=perplexity(nll_sum, num_tokens),
            num_tokens=num_tokens,
        )


def next_token_nll(module: nn.Module, batch: LMBatch) -> tuple[torch.Tensor, torch.Tensor, LMState]:
    """The summed negative log-likelihood of ``batch``'s real targets, their count (0-d each)
    and the state after the batch: an evaluation function (captured per key and batch shape
    under ``executor=cuda_graph``)."""
    logits, state = module(batch)  # (B, T, V)
    terms = masked_cross_entropy(logits, batch.targets, batch.mask)
    return terms.nll_sum, terms.num_tokens, state
