"""The encoder-decoder's training step: label-smoothed loss over the target tokens, backward."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from nmtbucket.config import TrainerConfig
from nmtbucket.constants import PAD_ID
from nmtbucket.data.batch import Batch
from nmtbucket.training.loss import label_smoothed_cross_entropy
from nmtbucket.training.step import NormalizedStep


class Seq2SeqStep(NormalizedStep):
    """Forward, label-smoothed loss and backward for one micro-batch of an encoder-decoder
    (a :class:`~nmtbucket.training.step.TrainStep`; each batch stands alone, so nothing is
    carried). The optimizer update is the trainer's job."""

    def __init__(self, label_smoothing: float, bf16_cuda: bool = False) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.bf16_cuda = bf16_cuda

    def __call__(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        with self._autocast():
            logits = module(batch)  # (B, T, V)
        terms = label_smoothed_cross_entropy(logits, batch.tgt, PAD_ID, self.label_smoothing)
        (terms.loss_sum / self.normalizer_on(batch.tgt.device)).backward()
        return (terms.loss_sum / terms.num_tokens.clamp(min=1)).detach()

    @classmethod
    def for_device(cls, config: TrainerConfig, device: torch.device) -> Seq2SeqStep:
        """The step ``trainer.*`` asks for on ``device`` (bf16 autocast only on CUDA)."""
        return cls(config.label_smoothing, bf16_cuda=config.bf16 and device.type == "cuda")

    def state_dict(self) -> dict[str, Any]:
        """Empty: each batch stands alone, so the step carries nothing."""
        return {}

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.bf16_cuda:  # no weight-cast cache: a CUDA graph cannot capture one
            return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
        return nullcontext()
