"""How one bucket key's module is run: the executor interface and what it runs.

An executor is made per key, on the key's first use, by an :class:`ExecutorFactory`; the
BucketingModule never runs a bucket's module any other way. ``run_step`` runs a training step
on one micro-batch and, with the last micro-batch of an accumulation window, the parameter
update, as one unit (:func:`step_and_update`). ``run_eval`` runs an evaluation function
(forward and the loss terms, no gradient) and ``forward`` the plain module. The eager executor
runs it as Python code, the compiled one through ``torch.compile``, and the CUDA-graph one
captures it per key and replays it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from typing import Any, ClassVar, Protocol, TypeAlias, runtime_checkable

import torch
from torch import nn

from nmtbucket.executors.update import ParameterUpdate

StepFn: TypeAlias = Callable[[nn.Module, Any], torch.Tensor]
"""A training step on one bucket's module and micro-batch: forward, loss and backward; returns
the loss as a 0-d tensor.

To be captured in a CUDA graph it must do all its work on tensors: no ``.item()``, no Python
branching on values, nothing read from the batch but its tensors (the batch it sees is a set of
static buffers the executor refills). A step that needs host-side work before each batch is
also a :class:`PreparingStep`; one that carries state from batch to batch, a
:class:`StatefulStep`. Pass the same object every time: a graph replays the step it captured."""


@runtime_checkable
class PreparingStep(Protocol):
    """A :data:`StepFn` with host-side work before each batch: every executor calls
    :meth:`prepare` outside any graph, before the step runs on the batch."""

    def __call__(self, module: nn.Module, batch: Any) -> torch.Tensor: ...

    def prepare(self, batch: Any) -> None:
        """Host-side work before the step runs on ``batch`` (reset or copy a carried state)."""
        ...


@runtime_checkable
class StatefulStep(Protocol):
    """A :data:`StepFn` that carries state from batch to batch (a language model's recurrent
    state): the CUDA-graph executor saves :meth:`state_dict` before its warm-up runs and loads
    it back after them, so a capture changes no carried state."""

    def __call__(self, module: nn.Module, batch: Any) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


EvalFn: TypeAlias = Callable[[nn.Module, Any], Any]
"""Forward-only work on one bucket's module and batch that returns small tensors (summed loss
terms, a carried state), for validation; under ``executor=cuda_graph`` it is captured per key
and batch shape, with the same rules as a :data:`StepFn`. Pass the same object every time."""


def prepare_batch(step_fn: StepFn, batch: Any) -> None:
    """Run ``step_fn.prepare(batch)`` when the step is a :class:`PreparingStep`."""
    if isinstance(step_fn, PreparingStep):
        step_fn.prepare(batch)


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
    """Runs the module that ``sym_gen`` built for one bucket key.

    ``forward`` and ``run_step`` are what every executor implements; ``run_eval``,
    ``prepare_train_step`` and ``release`` are hooks with the eager behaviour as default. An
    executor class that shares nothing between keys is its own :class:`ExecutorFactory`: the
    class attribute and class method below are that protocol's members."""

    captures_update: ClassVar[bool] = False

    @classmethod  # noqa: B027 - a hook: a factory object may share something between keys
    def reset(cls) -> None:
        """Executors made by the class share nothing, so there is nothing to forget."""

    def __init__(self, module: nn.Module, bucket_key: Hashable) -> None:
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

    def prepare_train_step(  # noqa: B027 - a hook: only graph executors prepare ahead
        self, batch: Any, step_fn: StepFn, update: ParameterUpdate | None, apply_update: bool
    ) -> None:
        """Get ready to run steps like this one (capture, compile) without training on
        ``batch``: parameters, gradients, optimizer and step state are left as they were."""

    def release(self) -> None:  # noqa: B027 - a hook: only graph executors hold anything
        """Free what the executor holds (captured graphs, static buffers)."""


class ExecutorFactory(Protocol):
    """Makes the executor for a key's module. A class such as
    :class:`~nmtbucket.executors.eager.EagerExecutor` is one; a factory object can also own what
    all keys share (a CUDA memory pool)."""

    captures_update: bool
    """Its executors capture the parameter update in a CUDA graph, so the optimizer must be
    built capturable and every key's step is captured before training."""

    def __call__(self, module: nn.Module, bucket_key: Hashable) -> BucketExecutor: ...

    def reset(self) -> None:
        """After every executor was released: forget what was shared between them."""
        ...
