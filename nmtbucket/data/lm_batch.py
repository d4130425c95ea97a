"""A language-model mini-batch: inputs, the next-token targets, real lengths per row, and the
recurrent state to start from (carried between stream batches, zeros for sentences)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LMBatch:
    """One step's input; its bucket key is the padded length T."""

    inputs: torch.Tensor  # (B, T) int64
    targets: torch.Tensor  # (B, T) int64, inputs shifted by one; any value after a row's length
    lengths: torch.Tensor  # (B,) int64 real positions per row (T everywhere in stream mode)
    state: tuple[torch.Tensor, torch.Tensor] | None = None  # (N, B, d) each; None: zeros

    @property
    def bucket_key(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) bool, True at the positions whose target counts (loss and perplexity)."""
        positions = torch.arange(self.inputs.shape[1], device=self.inputs.device)  # (T,)
        return positions[None, :] < self.lengths[:, None]
