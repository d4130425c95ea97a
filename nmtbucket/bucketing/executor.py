"""How one bucket key's module is run. An executor is made per key, on the key's first use, by an
:data:`ExecutorFactory`; the BucketingModule never runs a bucket's module any other way.

The interface is shaped for executors that need static shapes: ``forward`` runs forward only
(validation, search), and ``run_step`` runs a *whole* training step (forward, backward, clipping,
optimizer step) as one unit, which a CUDA-graph executor captures on first use and replays, with
the batch copied into static input buffers and every key's graph drawing on one shared memory
pool owned by the factory. Only the eager executor exists so far.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeAlias

import torch
from torch import nn

from nmtbucket.bucketing.keys import BucketKey

StepFn: TypeAlias = Callable[[nn.Module, Any], torch.Tensor]
"""A full training step on one bucket's module and batch; returns the loss as a 0-d tensor.

It must do all its work on tensors (no ``.item()``, no Python branching on values) so that graph
executors can capture it; an executor replays the step it captured, so pass the same object
every time for a given key."""


class BucketExecutor(ABC):
    """Runs the module that ``sym_gen`` built for one bucket key."""

    def __init__(self, module: nn.Module, bucket_key: BucketKey) -> None:
        self.module = module
        self.bucket_key = bucket_key

    @abstractmethod
    def forward(self, batch: Any) -> Any:
        """Forward pass only: whatever the bucket's module returns for ``batch``."""

    @abstractmethod
    def run_step(self, batch: Any, step_fn: StepFn) -> torch.Tensor:
        """Run ``step_fn`` on this bucket's module and ``batch`` as one unit; the loss, detached."""

    def release(self) -> None:  # noqa: B027 - optional hook, eager has nothing to free
        """Free what the executor holds (captured graphs, static buffers). Eager holds nothing."""


class EagerExecutor(BucketExecutor):
    """Plain PyTorch: every call runs the Python code of the module and the step."""

    def forward(self, batch: Any) -> Any:
        return self.module(batch)

    def run_step(self, batch: Any, step_fn: StepFn) -> torch.Tensor:
        return step_fn(self.module, batch).detach()


ExecutorFactory: TypeAlias = Callable[[nn.Module, BucketKey], BucketExecutor]
"""Makes the executor for a key's module. A class such as :class:`EagerExecutor` is one; a
factory object can also own resources all keys share (a CUDA memory pool, static buffers)."""
