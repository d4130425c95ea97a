"""Truncated back-propagation through time over one token stream (Zaremba et al. 2014): the
stream is cut into ``batch_size`` equal columns read side by side, ``bptt`` tokens at a time, so
every batch has the same shape (one bucket key) and row ``b`` of a batch continues row ``b`` of
the batch before it (the hidden state is carried over)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.errors import NmtBucketError


class StreamBatches:
    """The batches of one epoch over ``tokens`` (N,).

    The stream is trimmed to ``batch_size`` x (N // batch_size) tokens and laid out as that many
    columns. Each column's tokens after its first are predicted exactly once per epoch. With
    ``drop_last`` (training, one key for the whole run) a final chunk shorter than ``bptt`` is
    left out; without it (evaluation) it comes as a last, shorter batch.
    """

    def __init__(
        self, tokens: torch.Tensor, batch_size: int, bptt: int, drop_last: bool = True
    ) -> None:
        if batch_size < 1 or bptt < 1:
            raise NmtBucketError(
                f"batch size and bptt length must be at least 1, got {batch_size} and {bptt}"
            )
        column_len = tokens.numel() // batch_size
        if column_len < 2:
            raise NmtBucketError(
                f"a stream of {tokens.numel()} tokens is too short for {batch_size} columns "
                "of at least 2 tokens; lower the batch size"
            )
        self.columns = tokens[: batch_size * column_len].view(batch_size, column_len)  # (B, L)
        self.bptt = bptt
        self.drop_last = drop_last

    def __len__(self) -> int:
        predicted = self.columns.shape[1] - 1  # per column: every token after the first
        return predicted // self.bptt if self.drop_last else -(-predicted // self.bptt)

    def __iter__(self) -> Iterator[LMBatch]:
        batch_size = self.columns.shape[0]
        for i in range(len(self)):
            start = i * self.bptt
            end = min(start + self.bptt, self.columns.shape[1] - 1)
            yield LMBatch(
                inputs=self.columns[:, start:end],  # (B, T)
                targets=self.columns[:, start + 1 : end + 1],  # (B, T)
                lengths=torch.full((batch_size,), end - start),  # (B,) every position is real
            )
