"""A mini-batch padded to exactly its bucket key's static shape, and how to build one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from nmtbucket.bucketing.keys import LengthKey, key_lengths
from nmtbucket.data.dataset import SequenceDataset

FILLER = -1
"""Example id of a row that holds no example (only padding) in a batch."""


@dataclass(frozen=True)
class Batch:
    """One step's input. ``src`` is (B, S) and ``tgt`` is (B, T) for a ``LengthPair(S, T)`` key;
    a 1-D key ``S`` has ``src`` only. Positions past a row's length hold ``pad_id``."""

    bucket_key: LengthKey
    src: torch.Tensor  # (B, S) int64
    src_lengths: torch.Tensor  # (B,) int64, 0 for filler rows
    tgt: torch.Tensor | None  # (B, T) int64
    tgt_lengths: torch.Tensor | None  # (B,) int64
    example_ids: torch.Tensor  # (B,) dataset index of each row, FILLER for rows with no example
    num_real_tokens: int  # sum of all lengths: the tokens that are not padding

    @property
    def batch_size(self) -> int:
        return int(self.src.shape[0])

    @property
    def num_sequences(self) -> int:
        """Rows that hold an example (not ``FILLER``)."""
        return int((self.example_ids != FILLER).sum())

    @property
    def num_target_tokens(self) -> int:
        """Target tokens (the ones a training loss counts); 0 without a target stream."""
        return 0 if self.tgt_lengths is None else int(self.tgt_lengths.sum())

    @property
    def num_padded_tokens(self) -> int:
        """Tokens the step computes on: B x (S + T)."""
        return self.src.numel() + (0 if self.tgt is None else self.tgt.numel())

    @property
    def shape(self) -> tuple[int, ...]:
        """The step shape ``(B, S)`` or ``(B, S, T)``."""
        return (self.batch_size, *key_lengths(self.bucket_key))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return replace(
            self,
            src=self.src.to(device, non_blocking=non_blocking),
            src_lengths=self.src_lengths.to(device, non_blocking=non_blocking),
            tgt=move(self.tgt),
            tgt_lengths=move(self.tgt_lengths),
            example_ids=self.example_ids.to(device, non_blocking=non_blocking),
        )

    def pad_to(self, bucket_key: LengthKey, pad_id: int) -> Batch:
        """The same rows padded further, to a larger key (for example the default bucket)."""
        new_lengths = key_lengths(bucket_key)
        old_lengths = key_lengths(self.bucket_key)
        if len(new_lengths) != len(old_lengths) or any(
            n < o for n, o in zip(new_lengths, old_lengths, strict=True)
        ):
            raise ValueError(f"cannot pad a batch of key {self.bucket_key} to {bucket_key}")

        def widen(t: torch.Tensor, length: int) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, length - t.shape[1]), value=pad_id)

        return replace(
            self,
            bucket_key=bucket_key,
            src=widen(self.src, new_lengths[0]),
            tgt=None if self.tgt is None else widen(self.tgt, new_lengths[1]),
        )


def collate(
    dataset: SequenceDataset, example_ids: Sequence[int], bucket_key: LengthKey, pad_id: int
) -> Batch:
    """Pad the given examples (``FILLER`` for an empty row) to exactly ``bucket_key``'s shape.

    A sequence longer than its key (the ``truncate`` policy) keeps its first tokens.
    """
    limits = key_lengths(bucket_key)
    if len(limits) != len(dataset.streams):
        raise ValueError(
            f"key {bucket_key} has {len(limits)} lengths for {len(dataset.streams)} streams"
        )
    rows = len(example_ids)
    tensors, lengths = [], []
    for stream, limit in zip(dataset.streams, limits, strict=True):
        padded = torch.full((rows, limit), pad_id, dtype=torch.int64)  # (B, L)
        row_lengths = torch.zeros(rows, dtype=torch.int64)  # (B,)
        for row, example in enumerate(example_ids):
            if example == FILLER:
                continue
            tokens = stream[example][:limit]
            padded[row, : len(tokens)] = tokens
            row_lengths[row] = len(tokens)
        tensors.append(padded)
        lengths.append(row_lengths)
    two_streams = len(tensors) == 2
    return Batch(
        bucket_key=bucket_key,
        src=tensors[0],
        src_lengths=lengths[0],
        tgt=tensors[1] if two_streams else None,
        tgt_lengths=lengths[1] if two_streams else None,
        example_ids=torch.tensor(list(example_ids), dtype=torch.int64),
        num_real_tokens=int(sum(int(x.sum()) for x in lengths)),
    )
