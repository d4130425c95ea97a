"""Static input buffers for a captured step: a copy of a batch whose tensors stay at fixed
addresses, refilled in place from each new batch of the same shapes before a graph replays.

A batch is a dataclass; its fields that hold a tensor, a tuple of tensors (a recurrent state)
or None are inputs. Every other field (the bucket key, counts) is a Python value that a graph
cannot see change: it keeps the value of the batch the buffers were made from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any

import torch

from nmtbucket.errors import NmtBucketError

TensorField = torch.Tensor | tuple[torch.Tensor, ...] | None


def _input_fields(batch: Any) -> dict[str, TensorField]:
    if not dataclasses.is_dataclass(batch) or isinstance(batch, type):
        raise NmtBucketError(
            f"graph executors need dataclass batches (their tensor fields become static "
            f"buffers), got a {type(batch).__name__}"
        )
    fields = {}
    for field in dataclasses.fields(batch):
        value = getattr(batch, field.name)
        is_tensors = isinstance(value, tuple) and all(isinstance(v, torch.Tensor) for v in value)
        if value is None or isinstance(value, torch.Tensor) or (value and is_tensors):
            fields[field.name] = value
    return fields


def _describe(value: TensorField) -> Hashable:
    if value is None:
        return None
    tensors = value if isinstance(value, tuple) else (value,)
    return tuple((tuple(t.shape), t.dtype, str(t.device)) for t in tensors)


def batch_signature(batch: Any) -> Hashable:
    """What one set of static buffers fits: each input field's shapes, dtypes and devices
    (None where a field is None). Batches with equal signatures can share a captured graph."""
    return tuple((name, _describe(value)) for name, value in _input_fields(batch).items())


class StaticBatch:
    """Buffers shaped like ``example``; :attr:`batch` is the dataclass a graph is captured on."""

    def __init__(self, example: Any) -> None:
        self.signature = batch_signature(example)
        buffers = {name: _clone(value) for name, value in _input_fields(example).items()}
        self.batch = dataclasses.replace(example, **buffers)

    def load(self, batch: Any) -> None:
        """Copy ``batch``'s input tensors into the buffers (asynchronously on the device)."""
        if batch_signature(batch) != self.signature:
            raise NmtBucketError(
                f"a {type(batch).__name__} of signature {batch_signature(batch)} does not fit "
                f"static buffers of {self.signature}"
            )
        for name, value in _input_fields(batch).items():
            _copy(getattr(self.batch, name), value)


def _clone(value: TensorField) -> TensorField:
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(t.clone() for t in value)
    return value.clone()


def _copy(buffer: TensorField, value: TensorField) -> None:
    if isinstance(buffer, tuple) and isinstance(value, tuple):
        for b, v in zip(buffer, value, strict=True):
            b.copy_(v, non_blocking=True)
    elif isinstance(buffer, torch.Tensor) and isinstance(value, torch.Tensor):
        buffer.copy_(value, non_blocking=True)
