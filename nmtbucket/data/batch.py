"""A translation mini-batch, source and target padded to exactly its bucket key's static shape,
and how to build one from a parallel dataset. (A language model's batch is
:class:`~nmtbucket.data.lm_batch.LMBatch`.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from nmtbucket.bucketing.keys import LengthKey, LengthPair, key_lengths
from nmtbucket.constants import FILLER
from nmtbucket.data.dataset import SequenceDataset


@dataclass(frozen=True)
class Batch:
    """One step's input: ``src`` is (B, S) and ``tgt`` is (B, T) for a ``LengthPair(S, T)`` key.
    Positions past a row's length hold ``pad_id``."""

    bucket_key: LengthPair
    src: torch.Tensor  # (B, S) int64
    src_lengths: torch.Tensor  # (B,) int64, 0 for filler rows
    tgt: torch.Tensor  # (B, T) int64
    tgt_lengths: torch.Tensor  # (B,) int64
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
        """Target tokens (the ones a training loss counts)."""
        return int(self.tgt_lengths.sum())

    @property
    def num_padded_tokens(self) -> int:
        """Tokens the step computes on: B x (S + T)."""
        return self.src.numel() + self.tgt.numel()

    @property
    def shape(self) -> tuple[int, ...]:
        """The step shape ``(B, S, T)``."""
        return (self.batch_size, *key_lengths(self.bucket_key))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return replace(
            self,
            src=move(self.src),
            src_lengths=move(self.src_lengths),
            tgt=move(self.tgt),
            tgt_lengths=move(self.tgt_lengths),
            example_ids=move(self.example_ids),
        )

    def pad_to(self, bucket_key: LengthPair, pad_id: int) -> Batch:
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
            tgt=widen(self.tgt, new_lengths[1]),
        )


def collate(
    dataset: SequenceDataset, example_ids: Sequence[int], bucket_key: LengthKey, pad_id: int
) -> Batch:
    """Pad the given examples (``FILLER`` for an empty row) to exactly ``bucket_key``'s shape
    (a ``(src_len, tgt_len)`` pair; the batch's key is that :class:`LengthPair`).

    A sequence longer than its key (the ``truncate`` policy) keeps its first tokens.
    """
    limits = key_lengths(bucket_key)
    if len(limits) != 2 or len(dataset.streams) != 2:
        raise ValueError(
            f"a translation batch needs a (src_len, tgt_len) key and a source and a target "
            f"stream; got key {bucket_key} for {len(dataset.streams)} streams"
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
    return Batch(
        bucket_key=LengthPair(*limits),
        src=tensors[0],
        src_lengths=lengths[0],
        tgt=tensors[1],
        tgt_lengths=lengths[1],
        example_ids=torch.tensor(list(example_ids), dtype=torch.int64),
        num_real_tokens=int(sum(int(x.sum()) for x in lengths)),
    )
