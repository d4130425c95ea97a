"""Token-id sequences stored flat (one int32 tensor plus offsets); datasets of aligned streams."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class TokenSequences:
    """Many variable-length sequences of token ids in one flat tensor; item ``i`` is a view."""

    def __init__(self, flat: torch.Tensor, offsets: torch.Tensor) -> None:
        if offsets.ndim != 1 or len(offsets) < 1 or int(offsets[0]) != 0:
            raise ValueError("offsets must be 1-D and start at 0")
        if int(offsets[-1]) != len(flat):
            raise ValueError(f"offsets end at {int(offsets[-1])} but there are {len(flat)} tokens")
        self.flat = flat  # (total_tokens,)
        self.offsets = offsets  # (N + 1,)

    @classmethod
    def from_lists(cls, sequences: Sequence[Sequence[int]]) -> TokenSequences:
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64)
        offsets = torch.zeros(len(sequences) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(lengths, dim=0)
        flat = torch.tensor([t for s in sequences for t in s], dtype=torch.int32)
        return cls(flat, offsets)

    @property
    def lengths(self) -> torch.Tensor:
        """(N,) length of every sequence."""
        return self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.flat[int(self.offsets[index]) : int(self.offsets[index + 1])]


class SequenceDataset:
    """Aligned streams of the same examples: ``(tokens,)`` for a language model,
    ``(src, tgt)`` for translation. The bucketing core reads only lengths and items."""

    def __init__(self, *streams: TokenSequences) -> None:
        if len(streams) not in (1, 2):
            raise ValueError(f"a dataset has one or two streams, got {len(streams)}")
        sizes = {len(s) for s in streams}
        if len(sizes) != 1:
            raise ValueError(f"streams hold different numbers of examples: {sorted(sizes)}")
        self.streams = streams

    @property
    def lengths(self) -> torch.Tensor:
        """(N, d) per-stream lengths, d = number of streams."""
        return torch.stack([s.lengths for s in self.streams], dim=1)

    def __len__(self) -> int:
        return len(self.streams[0])
