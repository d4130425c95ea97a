"""A language-model mini-batch: inputs, the next-token targets, real lengths per row, and the
recurrent state to start from (carried between stream batches, zeros for sentences); and how
sentence mode builds one from whole sentences padded to a length key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class LMBatch:
    """One step's input; its bucket key is the padded length T."""

    inputs: torch.Tensor  # (B, T) int64
    targets: torch.Tensor  # (B, T) int64, inputs shifted by one; any value after a row's length
    lengths: torch.Tensor  # (B,) int64 real positions per row (T everywhere in stream mode)
    state: tuple[torch.Tensor, torch.Tensor] | None = None  # (N, B, d) each; None: zeros
    continues: bool = False  # row b continues row b of the previous batch (stream mode)

    @property
    def bucket_key(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def batch_size(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_sequences(self) -> int:
        """Rows with at least one real position (a filler row, or a stream column that has
        ended, has none)."""
        return int((self.lengths > 0).sum())

    @property
    def num_target_tokens(self) -> int:
        """Real positions: the tokens predicted, and counted in the loss and perplexity."""
        return int(self.lengths.sum())

    @property
    def num_real_tokens(self) -> int:
        return self.num_target_tokens

    @property
    def num_padded_tokens(self) -> int:
        """Positions computed: B x T."""
        return self.inputs.numel()

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) bool, True at the positions whose target counts (loss and perplexity)."""
        positions = torch.arange(self.inputs.shape[1], device=self.inputs.device)  # (T,)
        return positions[None, :] < self.lengths[:, None]

    def with_carried_state(self, carried: tuple[torch.Tensor, torch.Tensor] | None) -> LMBatch:
        """This batch starting from ``carried`` (the state the previous batch ended in, moved
        to this batch's device) when it ``continues`` that batch, else from zeros."""
        if not self.continues or carried is None:
            return replace(self, state=None)
        device = self.inputs.device
        return replace(self, state=(carried[0].to(device), carried[1].to(device)))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> LMBatch:
        """The tensors on ``device`` (a carried state stays where it is)."""
        return replace(
            self,
            inputs=self.inputs.to(device, non_blocking=non_blocking),
            targets=self.targets.to(device, non_blocking=non_blocking),
            lengths=self.lengths.to(device, non_blocking=non_blocking),
        )


def collate_sentences(sentences: Sequence[Sequence[int]], bucket_key: int, eos_id: int) -> LMBatch:
    """Sentences (word ids ending with ``<eos>``) as one batch of ``bucket_key`` positions.

    Every token of a sentence is predicted, the first one from ``<eos>`` (the end of the
    sentence before, as in the stream), so a sentence of n ids (``<eos>`` included) needs a key
    of at least n. Positions after a row's length are padding, left out by :attr:`LMBatch.mask`;
    an empty sentence makes a row of padding only (a filler row of a bucket's last batch).
    """
    rows = len(sentences)
    inputs = torch.full((rows, bucket_key), eos_id, dtype=torch.int64)  # (B, T)
    targets = torch.full((rows, bucket_key), eos_id, dtype=torch.int64)  # (B, T)
    lengths = torch.zeros(rows, dtype=torch.int64)  # (B,)
    for row, ids in enumerate(sentences):
        if len(ids) > bucket_key:
            raise ValueError(f"a sentence of {len(ids)} ids does not fit key {bucket_key}")
        tokens = torch.as_tensor(ids, dtype=torch.int64)
        targets[row, : len(ids)] = tokens
        inputs[row, 1 : len(ids)] = tokens[:-1]  # position 0 keeps eos_id: the context start
        lengths[row] = len(ids)
    return LMBatch(inputs, targets, lengths)
