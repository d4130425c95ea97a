"""Truncated back-propagation through time over one token stream (Zaremba et al. 2014).

The predictions of the stream are cut into ``batch_size`` columns read side by side, ``bptt``
positions at a time, so row ``b`` of a batch continues row ``b`` of the batch before it (the
trainer carries the hidden state over). Every batch has the same shape, so one bucket key
serves the whole run: column lengths differ by at most one, and the last chunk of a column is
padded and masked rather than dropped or shortened, so every token after the first is predicted
exactly once per epoch. Column ``b`` starts with the
token that column ``b - 1`` predicts last, so no prediction is lost at a column boundary (only
the hidden state before it).

Under torchrun the columns are split between the ranks, each taking a consecutive share and
carrying its own hidden state, so N ranks train on what one process with all the columns does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from nmtbucket.bucketing.sampler import check_same_layout
from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.errors import NmtBucketError


class StreamBatches:
    """The batches of ``tokens`` (N,), epoch after epoch, resumable mid-epoch.

    Iterating yields the rest of the current epoch and then moves to the next; the first batch
    of an epoch has ``continues=False`` (start from a zero state), the others ``True``.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        batch_size: int,
        bptt: int,
        pad_id: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or bptt < 1:
            raise NmtBucketError(
                f"batch size and bptt length must be at least 1, got {batch_size} and {bptt}"
            )
        if batch_size % world_size:
            raise NmtBucketError(
                f"data.lm.batch_size={batch_size} columns cannot be split evenly over "
                f"{world_size} ranks; make it a multiple of the number of ranks"
            )
        predictions = tokens.numel() - 1
        if predictions < batch_size:
            raise NmtBucketError(
                f"a stream of {tokens.numel()} tokens is too short for {batch_size} columns; "
                "lower the batch size"
            )
        # predictions per column: the first (predictions % batch_size) columns take one more
        base, longer = divmod(predictions, batch_size)
        lengths = [base + 1] * longer + [base] * (batch_size - longer)
        self.num_batches = -(-lengths[0] // bptt)
        padded_len = self.num_batches * bptt  # per column, a multiple of bptt
        self.inputs = torch.full((batch_size, padded_len), pad_id, dtype=torch.int64)  # (B, L)
        self.targets = torch.full((batch_size, padded_len), pad_id, dtype=torch.int64)  # (B, L)
        self.column_lengths = torch.tensor(lengths, dtype=torch.int64)  # (B,) real positions
        start = 0
        for column, length in enumerate(lengths):
            self.inputs[column, :length] = tokens[start : start + length]
            self.targets[column, :length] = tokens[start + 1 : start + length + 1]
            start += length
        share = batch_size // world_size
        mine = slice(rank * share, (rank + 1) * share)  # this rank's columns
        self.inputs, self.targets = self.inputs[mine], self.targets[mine]  # (B / N, L) each
        self.column_lengths = self.column_lengths[mine]
        self.total_columns = batch_size
        self.num_tokens = tokens.numel()
        self.bptt = bptt
        self.epoch = 0
        self.position = 0  # batches of the current epoch already yielded

    @property
    def batch_size(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_predictions(self) -> int:
        """Tokens predicted per epoch by this rank (one process: all of them but the first)."""
        return int(self.column_lengths.sum())

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[LMBatch]:
        while self.position < self.num_batches:
            self.position += 1  # before yielding: a state taken now resumes after this batch
            yield self.batch(self.position - 1)
        self.epoch += 1
        self.position = 0

    def batch(self, index: int) -> LMBatch:
        """Batch ``index`` of every epoch: positions ``index * bptt`` onwards of each column."""
        start = index * self.bptt
        lengths = (self.column_lengths - start).clamp(0, self.bptt)  # (B,)
        return LMBatch(
            inputs=self.inputs[:, start : start + self.bptt],  # (B, bptt)
            targets=self.targets[:, start : start + self.bptt],  # (B, bptt)
            lengths=lengths,
            continues=index > 0,
        )

    def example_batches(self) -> list[LMBatch]:
        """One batch of the one key (to capture or compile its step before training)."""
        return [self.batch(0)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "num_tokens": self.num_tokens,
            "batch_size": self.total_columns,
            "bptt": self.bptt,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume where ``state`` was taken; refuses a state from another stream or layout."""
        check_same_layout(
            "stream",
            state,
            self.state_dict(),
            ("num_tokens", "batch_size", "bptt"),
            "resume with the same data, batch size and bptt",
        )
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
