"""Perplexity of a language model on a held-out split, over every token of it, ``<eos>``
included, as the papers report it: ``exp`` of the mean negative log-likelihood per token."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.models.lm import LMState
from nmtbucket.training.evaluation import SplitScores, score_batches
from nmtbucket.training.loss import masked_cross_entropy


class PerplexityEvaluator:
    """Scores a split given as its fixed ``batches`` (stream batches, which carry the state from
    one to the next, or sentence batches, which start from zeros); a
    :class:`~nmtbucket.training.evaluation.SplitEvaluator`."""

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

    def evaluate(self, model: BucketingModule) -> SplitScores:
        """Loss and perplexity over every token of the split."""
        carried: LMState | None = None  # (num_layers, B, d_model) each

        def batch_nll(model: BucketingModule, batch: LMBatch) -> tuple[torch.Tensor, torch.Tensor]:
            nonlocal carried
            nll_sum, num_tokens, carried = model.eval_step(
                batch.with_carried_state(carried), next_token_nll
            )
            return nll_sum, num_tokens

        return score_batches(model, self.split, self.batches, batch_nll, self.device, self.progress)


def next_token_nll(module: nn.Module, batch: LMBatch) -> tuple[torch.Tensor, torch.Tensor, LMState]:
    """The summed negative log-likelihood of ``batch``'s real targets, their count (0-d each)
    and the state after the batch: an evaluation function (captured per key and batch shape
    under ``executor=cuda_graph``)."""
    logits, state = module(batch)  # (B, T, V)
    terms = masked_cross_entropy(logits, batch.targets, batch.mask)
    return terms.nll_sum, terms.num_tokens, state
