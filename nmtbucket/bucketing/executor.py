"""How one bucket key's module is run. An executor is made per key, on the key's first use, by an
:class:`ExecutorFactory`; the BucketingModule never runs a bucket's module any other way.

``run_step`` runs a training step on one micro-batch and, with the last micro-batch of an
accumulation window, the parameter update, as one unit: :func:`step_and_update`. ``run_eval``
runs an evaluation function (forward and the loss terms, no gradient) and ``forward`` the plain
module. The eager executor here runs it as Python code; the CUDA-graph
executor (:mod:`nmtbucket.bucketing.cuda_graph`) captures it per key and replays it, and the
compiled one (:mod:`nmtbucket.bucketing.compiled`) runs it through ``torch.compile``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeAlias

import torch
from torch import nn

from nmtbucket.bucketing.keys import BucketKey
from nmtbucket.update import ParameterUpdate

StepFn: TypeAlias = Callable[[nn.Module, Any], torch.Tensor]
"""A training step on one bucket's module and micro-batch: forward, loss and backward; returns
the loss as a 0-d tensor.

To be captured in a CUDA graph it must do all its work on tensors: no ``.item()``, no Python
branching on values, nothing read from the batch but its tensors (the batch it sees is a set of
static buffers the executor refills). Host-side work a batch needs before its step (resetting
a carried state) goes in an optional ``prepare(batch)`` method, which every executor calls
outside any graph. Pass the same object every time: a graph replays the step it captured."""


EvalFn: TypeAlias = Callable[[nn.Module, Any], Any]
"""Forward-only work on one bucket's module and batch that returns small tensors (summed loss
terms, a carried state), for validation; under ``executor=cuda_graph`` it is captured per key
and batch shape, with the same rules as a :data:`StepFn`. Pass the same object every time."""


def prepare_batch(step_fn: StepFn, batch: Any) -> None:
    """Run ``step_fn.prepare(batch)`` when the step has one (see :data:`StepFn`)."""
    prepare = getattr(step_fn, "prepare", None)
    if prepare is not None:
        prepare(batch)


def step_and_update(
    module: nn.Module,
    batch: Any,
    step_fn: StepFn,
    update: ParameterUpdate | None,
    apply_update: bool,
) -> torch.Tensor:
    """The unit an executor runs: ``step_fn`` on ``batch``; with ``update``, the loss noted for
    its non-finite check and, if ``apply_update``, the update applied. The loss, detached."""
    loss = step_fn(module, batch).detach()
    if update is not None:
        update.note_loss(loss)
        if apply_update:
            update.apply()
    return loss


class BucketExecutor(ABC):
    """Runs the module that ``sym_gen`` built for one bucket key."""

    def __init__(self, module: nn.Module, bucket_key: BucketKey) -> None:
        self.module = module
        self.bucket_key = bucket_key

    @abstractmethod
    def forward(self, batch: Any) -> Any:
        """Forward pass only: whatever the bucket's module returns for ``batch``."""

    @abstractmethod
    def run_step(
        self, batch: Any, step_fn: StepFn, update: ParameterUpdate | None, apply_update: bool
    ) -> torch.Tensor:
        """:func:`step_and_update` on this bucket's module and ``batch``; the loss, detached."""

    def run_eval(self, batch: Any, eval_fn: EvalFn) -> Any:
        """``eval_fn`` on this bucket's module and ``batch``."""
        return eval_fn(self.module, batch)

    def prepare_train_step(  # noqa: B027 - optional hook, eager has nothing to prepare
        self, batch: Any, step_fn: StepFn, update: ParameterUpdate | None, apply_update: bool
    ) -> None:
        """Get ready to run steps like this one (capture, compile) without training on
        ``batch``: parameters, gradients, optimizer and step state are left as they were."""

    def release(self) -> None:  # noqa: B027 - optional hook, eager has nothing to free
        """Free what the executor holds (captured graphs, static buffers). Eager holds nothing."""


class EagerExecutor(BucketExecutor):
    """Plain PyTorch: every call runs the Python code of the module and the step."""

    captures_update: ClassVar[bool] = False

    def forward(self, batch: Any) -> Any:
        return self.module(batch)

    def run_step(
        self, batch: Any, step_fn: StepFn, update: ParameterUpdate | None, apply_update: bool
    ) -> torch.Tensor:
        prepare_batch(step_fn, batch)
        return step_and_update(self.module, batch, step_fn, update, apply_update)


class ExecutorFactory(Protocol):
    """Makes the executor for a key's module. A class such as :class:`EagerExecutor` is one; a
    factory object can also own what all keys share (a CUDA memory pool).

    ``captures_update``: its executors capture the parameter update in a CUDA graph, so the
    optimizer must be built capturable (learning rate as a device tensor)."""

    captures_update: bool

    def __call__(self, module: nn.Module, bucket_key: BucketKey) -> BucketExecutor: ...
