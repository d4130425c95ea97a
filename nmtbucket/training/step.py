"""The training step as the loop sees it: what it reads from a batch, the step it runs on each
micro-batch in its bucket's module, what an update's summed loss is divided by, and the device
scalar that divisor lives in. Each task's step is in its own package."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from nmtbucket.distributed import Ranks, sum_across_ranks
from nmtbucket.errors import NmtBucketError
from nmtbucket.executors.interface import StatefulStep


class TrainBatch(Protocol):
    """What the loop reads from a batch besides running it: where it goes and what it counts."""

    @property
    def bucket_key(self) -> Any: ...

    @property
    def num_sequences(self) -> int:
        """Rows that hold an example (filler rows of padding only are not counted)."""
        ...

    @property
    def num_target_tokens(self) -> int:
        """Tokens the loss counts (predicted, not padding)."""
        ...

    @property
    def num_real_tokens(self) -> int:
        """Tokens of the batch that are not padding, all streams together."""
        ...

    @property
    def num_padded_tokens(self) -> int:
        """Positions the step computes on, padding included."""
        ...

    def to(self, device: torch.device, non_blocking: bool = False) -> TrainBatch: ...


class TrainStep(Protocol):
    """Forward, loss and backward of one micro-batch in its bucket's module (a
    :data:`~nmtbucket.executors.interface.StepFn`). The gradient is that of the summed loss
    divided by ``normalizer``, which the trainer sets before each update's micro-batches.
    Returns the loss per target token, detached. A step that carries state across batches is
    also a :class:`CarriedStateStep`."""

    normalizer: float

    def __call__(self, module: nn.Module, batch: Any) -> torch.Tensor: ...


@runtime_checkable
class CarriedStateStep(StatefulStep, Protocol):
    """A step that carries state from batch to batch (a language model's recurrent state): the
    CUDA-graph executor restores it around warm-up runs
    (:class:`~nmtbucket.executors.interface.StatefulStep`), the trainer saves it for exact
    resume and drops it after a skipped update."""

    def discard_state_if(self, skipped: torch.Tensor) -> None:
        """After each update: forget what was carried from its batches where ``skipped`` (a
        0-d device tensor, 1.0 when the update was skipped), with tensor operations only."""
        ...


@dataclass(frozen=True)
class WindowCounts:
    """What an accumulation window holds: this rank's, or (:meth:`summed`) all ranks'."""

    rows: int  # rows holding an example
    target_tokens: int
    real_tokens: int
    padded_tokens: int

    @classmethod
    def of(cls, window: Sequence[TrainBatch]) -> WindowCounts:
        return cls(
            rows=sum(b.num_sequences for b in window),
            target_tokens=sum(b.num_target_tokens for b in window),
            real_tokens=sum(b.num_real_tokens for b in window),
            padded_tokens=sum(b.num_padded_tokens for b in window),
        )

    def summed(self, ranks: Ranks) -> WindowCounts:
        """The counts of every rank's window of this step added up (one small all-reduce on
        the host)."""
        return WindowCounts(*(round(v) for v in sum_across_ranks(astuple(self), ranks)))

    def normalizer(self, loss_per: str) -> float:
        """What an update's summed loss is divided by: its target tokens (``token``), or its
        batch rows (``row``: the loss summed over time steps and averaged over sequences, as
        Zaremba et al. train). Over the whole accumulation window, so an update over several
        micro-batches equals one over their union, however the bucket keys split them; under
        torchrun of the summed counts (as fairseq does), so that N ranks compute the update one
        process computes on all of their rows."""
        if loss_per == "row":
            return float(max(self.rows, 1))
        if loss_per == "token":
            return float(max(self.target_tokens, 1))
        raise NmtBucketError(f"trainer.loss_per must be token or row, got {loss_per!r}")


class DeviceScalar:
    """A float the host sets and a captured step reads: one 0-d float32 tensor per device,
    filled in place on every set, so a graph captured once sees each new value."""

    def __init__(self, value: float = 1.0) -> None:
        self._value = float(value)
        self._tensors: dict[torch.device, torch.Tensor] = {}

    @property
    def value(self) -> float:
        return self._value

    @value.setter
    def value(self, value: float) -> None:
        self._value = float(value)
        for tensor in self._tensors.values():
            tensor.fill_(self._value)

    def on(self, device: torch.device) -> torch.Tensor:
        """The tensor on ``device`` (made on first use), holding the current value."""
        tensor = self._tensors.get(device)
        if tensor is None:
            tensor = torch.full((), self._value, device=device)
            self._tensors[device] = tensor
        return tensor


class NormalizedStep:
    """The ``normalizer`` of a :class:`TrainStep`, kept as a :class:`DeviceScalar`: setting it
    is a float assignment, and the step divides by the device tensor."""

    def __init__(self) -> None:
        self._normalizer = DeviceScalar(1.0)

    @property
    def normalizer(self) -> float:
        return self._normalizer.value

    @normalizer.setter
    def normalizer(self, value: float) -> None:
        self._normalizer.value = value

    def normalizer_on(self, device: torch.device) -> torch.Tensor:
        return self._normalizer.on(device)
