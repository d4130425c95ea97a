"""Label-smoothed cross-entropy summed over the real (non-padding) target tokens, computed with
tensor operations only so that a graph executor can capture it."""

from __future__ import annotations

from typing import NamedTuple

import torch

from nmtbucket.errors import NmtBucketError


class LossTerms(NamedTuple):
    """0-d tensors; divide a sum by ``num_tokens`` for a per-token value."""

    loss_sum: torch.Tensor  # float32, label-smoothed, what training minimises
    nll_sum: torch.Tensor  # float32, unsmoothed negative log-likelihood (for perplexity)
    num_tokens: torch.Tensor  # int64, non-padding target tokens


def label_smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, pad_id: int, smoothing: float
) -> LossTerms:
    """Cross-entropy of ``logits`` (B, T, V) against ``target`` (B, T), padding ignored.

    The smoothed target distribution puts ``1 - smoothing`` on the gold token and spreads
    ``smoothing`` uniformly over *all* V entries (the gold and padding included), so per token
    ``loss = (1 - smoothing) * nll - smoothing * mean_v(log p_v)``: the definition of
    ``torch.nn.functional.cross_entropy(label_smoothing=...)``. Computed in float32 whatever
    the dtype of ``logits``.
    """
    return masked_cross_entropy(logits, target, target != pad_id, smoothing)


def masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, smoothing: float = 0.0
) -> LossTerms:
    """Like :func:`label_smoothed_cross_entropy`, counting the positions where ``mask`` (B, T)
    is True; ``target`` may hold any valid id elsewhere."""
    if not 0.0 <= smoothing < 1.0:
        raise NmtBucketError(
            f"label smoothing must be in [0, 1), got {smoothing}; set trainer.label_smoothing"
        )
    if logits.shape[:-1] != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match target {tuple(target.shape)}")
    log_probs = logits.float().log_softmax(dim=-1)  # (B, T, V)
    nll = -log_probs.gather(-1, target[..., None])[..., 0]  # (B, T)
    uniform = -log_probs.mean(dim=-1)  # (B, T)
    zero = nll.new_zeros(())
    loss = (1.0 - smoothing) * nll + smoothing * uniform  # (B, T)
    return LossTerms(
        loss_sum=torch.where(mask, loss, zero).sum(),
        nll_sum=torch.where(mask, nll, zero).sum(),
        num_tokens=mask.sum(),
    )
