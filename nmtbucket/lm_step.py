"""The language-model training step: forward from the carried (or a zero) state, masked
cross-entropy, backward; and the state carried to the next batch of the stream."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.loss import masked_cross_entropy
from nmtbucket.models.lm import LMState


class LanguageModelStep:
    """One micro-batch through its bucket's language model (a
    :class:`~nmtbucket.train_step.TrainStep`).

    A batch that ``continues`` the previous one (stream mode) starts from the state the previous
    batch ended in, detached: truncated back-propagation through time. Any other batch (the
    first of an epoch, or a sentence-mode batch) starts from zeros. The carried state is part of
    :meth:`state_dict`, so a run resumed mid-epoch continues exactly.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing
        self.normalizer = 1.0
        self._state: LMState | None = None  # (num_layers, B, d_model) each

    def __call__(self, module: nn.Module, batch: LMBatch) -> torch.Tensor:
        logits, state = module(batch.with_carried_state(self._state))  # (B, T, V)
        terms = masked_cross_entropy(logits, batch.targets, batch.mask, self.label_smoothing)
        (terms.loss_sum / self.normalizer).backward()
        self._state = (state[0].detach(), state[1].detach())
        return (terms.loss_sum / terms.num_tokens.clamp(min=1)).detach()

    def state_dict(self) -> dict[str, Any]:
        return {} if self._state is None else {"hidden": self._state[0], "cell": self._state[1]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._state = (state["hidden"], state["cell"]) if state else None

    def discard_state(self) -> None:
        """After a skipped update: the next batch starts from zeros, not from a state that
        may hold NaN or infinity."""
        self._state = None
