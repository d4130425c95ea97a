"""Parallel text: reading aligned source/target files, and choosing which training pairs to keep."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nmtbucket.data.corpus import CorpusError, read_lines


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    """The lines of two aligned files; line ``i`` of one translates line ``i`` of the other."""
    src_lines = read_lines(src_path)
    tgt_lines = read_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise CorpusError(
            f"parallel files are not aligned: {src_path} has {len(src_lines)} lines but "
            f"{tgt_path} has {len(tgt_lines)}; every source line needs exactly one target line"
        )
    return src_lines, tgt_lines


@dataclass(frozen=True)
class FilterStats:
    """How many training pairs were kept, and why the others were skipped.

    A pair counts once, under the first reason that applies, in the order empty, too long,
    length ratio.
    """

    total: int
    kept: int
    empty: int
    too_long: int
    bad_ratio: int
    max_src_len: int
    max_tgt_len: int
    max_length_ratio: float

    def summary(self) -> str:
        """One line for the log, naming the settings behind each non-zero count."""
        reasons = [
            (self.empty, "with an empty side"),
            (
                self.too_long,
                f"longer than {self.max_src_len}/{self.max_tgt_len} tokens "
                "(data.max_src_len/max_tgt_len)",
            ),
            (
                self.bad_ratio,
                f"with a length ratio above {self.max_length_ratio:g} (data.max_length_ratio)",
            ),
        ]
        skipped = ", ".join(f"{count} {why}" for count, why in reasons if count)
        line = f"kept {self.kept} of {self.total} training pairs"
        return f"{line}; skipped {skipped}" if skipped else line


def filter_training_pairs(
    src_lengths: torch.Tensor,
    tgt_lengths: torch.Tensor,
    max_src_len: int,
    max_tgt_len: int,
    max_length_ratio: float,
) -> tuple[torch.Tensor, FilterStats]:
    """Indices (int64, ascending) of the pairs worth training on, and counts of the others.

    Lengths count the EOS token, so a length of 1 or less is an empty sentence. A pair is
    skipped when a side is empty, a side is longer than its limit, or the longer side is more
    than ``max_length_ratio`` times the shorter one.
    """
    src = src_lengths.to(torch.int64)  # (N,)
    tgt = tgt_lengths.to(torch.int64)  # (N,)
    if src.shape != tgt.shape or src.ndim != 1:
        raise ValueError(f"length shapes differ: {tuple(src.shape)} and {tuple(tgt.shape)}")
    empty = (src <= 1) | (tgt <= 1)
    too_long = ~empty & ((src > max_src_len) | (tgt > max_tgt_len))
    longer = torch.maximum(src, tgt).to(torch.float64)
    shorter = torch.minimum(src, tgt).clamp(min=1).to(torch.float64)
    bad_ratio = ~empty & ~too_long & (longer > max_length_ratio * shorter)
    keep = ~(empty | too_long | bad_ratio)
    stats = FilterStats(
        total=len(src),
        kept=int(keep.sum()),
        empty=int(empty.sum()),
        too_long=int(too_long.sum()),
        bad_ratio=int(bad_ratio.sum()),
        max_src_len=max_src_len,
        max_tgt_len=max_tgt_len,
        max_length_ratio=max_length_ratio,
    )
    return torch.nonzero(keep).flatten(), stats
