"""Bucket keys: a (src_len, tgt_len) pair for translation, one length for language models.

Through the Python API a key may be any hashable value that the user's ``sym_gen`` understands;
the helpers here only concern *length* keys, which the built-in bucket maths and sampler use.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple, TypeAlias

BucketKey: TypeAlias = Hashable
"""Any hashable value naming one static-shape graph. ``sym_gen(bucket_key)`` builds it."""


class LengthPair(NamedTuple):
    """The translation key: padded source and target lengths of every example in a batch."""

    src_len: int
    tgt_len: int


LengthKey: TypeAlias = int | LengthPair
"""A key made of lengths: ``int`` for one stream (language model), ``LengthPair`` for two."""


def key_lengths(key: LengthKey) -> tuple[int, ...]:
    """The padded length of each stream that ``key`` stands for: ``(S,)`` or ``(S, T)``."""
    if isinstance(key, int):
        return (key,)
    return tuple(key)


def make_length_key(lengths: Sequence[int]) -> LengthKey:
    """The key for per-stream lengths: a plain ``int`` for one stream, a ``LengthPair`` for two."""
    if len(lengths) == 1:
        return int(lengths[0])
    if len(lengths) == 2:
        return LengthPair(int(lengths[0]), int(lengths[1]))
    raise ValueError(f"length keys have one or two streams, got {len(lengths)}: {tuple(lengths)}")


def tokens_per_row(key: LengthKey) -> int:
    """Padded tokens one example row of ``key`` costs: S, or S + T."""
    return sum(key_lengths(key))
