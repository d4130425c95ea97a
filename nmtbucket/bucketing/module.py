"""BucketingModule: one module per bucket key from a user's ``sym_gen``, all sharing the default
bucket's parameters, with a forward call that dispatches on ``batch.bucket_key``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from nmtbucket.bucketing.keys import BucketKey
from nmtbucket.errors import NmtBucketError, SymGenError
from nmtbucket.executors.eager import EagerExecutor
from nmtbucket.executors.interface import BucketExecutor, EvalFn, ExecutorFactory, StepFn
from nmtbucket.executors.update import ParameterUpdate

SymGen = Callable[[Any], nn.Module]
"""Builds the module for a bucket key. Every module it returns must hold the very parameter
tensors of the module it built for the default key (build layers once, wrap them per key)."""


class BucketingModule(nn.Module):
    """A model unrolled once per bucket key, with one set of parameters.

    ``sym_gen(default_bucket_key)`` is built first and owns the parameters; it should be the
    largest key so that later keys fit in its memory. Other keys are built on first use and
    cached. ``parameters()`` and ``state_dict()`` hold one copy of each parameter, so one
    optimizer over ``module.parameters()`` trains every bucket.
    """

    def __init__(
        self,
        sym_gen: SymGen,
        default_bucket_key: BucketKey,
        executor_factory: ExecutorFactory = EagerExecutor,
    ) -> None:
        super().__init__()
        _require_hashable(default_bucket_key)
        self.sym_gen = sym_gen
        self.default_bucket_key = default_bucket_key
        self.executor_factory = executor_factory
        self.default_module = self._generate(default_bucket_key)
        self._bucket_modules: dict[BucketKey, nn.Module] = {default_bucket_key: self.default_module}
        self._executors: dict[BucketKey, BucketExecutor] = {}
        self._current_bucket_key = default_bucket_key

    @property
    def current_bucket_key(self) -> BucketKey:
        """The key of the last bucket switched to (by a forward call or :meth:`switch_bucket`)."""
        return self._current_bucket_key

    @property
    def built_bucket_keys(self) -> tuple[BucketKey, ...]:
        """Every key built so far, in build order; the default key comes first."""
        return tuple(self._bucket_modules)

    def bucket_module(self, bucket_key: BucketKey) -> nn.Module:
        """The module for ``bucket_key``, built and checked on first use."""
        _require_hashable(bucket_key)
        module = self._bucket_modules.get(bucket_key)
        if module is None:
            module = self._generate(bucket_key)
            self._check_shared_parameters(module, bucket_key)
            module.train(self.training)
            self._bucket_modules[bucket_key] = module
        return module

    def switch_bucket(self, bucket_key: BucketKey) -> BucketExecutor:
        """Make ``bucket_key`` current and return its executor (built on first use)."""
        executor = self._executors.get(bucket_key)
        if executor is None:
            executor = self.executor_factory(self.bucket_module(bucket_key), bucket_key)
            self._executors[bucket_key] = executor
        self._current_bucket_key = bucket_key
        return executor

    def forward(self, batch: Any) -> Any:
        """Run ``batch`` (forward only) through the module of ``batch.bucket_key``."""
        return self.switch_bucket(_bucket_key_of(batch)).forward(batch)

    def train_step(
        self,
        batch: Any,
        step_fn: StepFn,
        update: ParameterUpdate | None = None,
        apply_update: bool = True,
    ) -> torch.Tensor:
        """Run ``step_fn`` on ``batch`` in its bucket and, with ``update``, the parameter update
        too (unless ``apply_update`` is False: a micro-batch before the last of an accumulation
        window), as one unit; returns the detached loss."""
        executor = self.switch_bucket(_bucket_key_of(batch))
        apply_update = apply_update and update is not None
        loss = executor.run_step(batch, step_fn, update, apply_update)
        if update is not None:
            update.record_micro_batch(update_applied=apply_update)
        return loss

    def eval_step(self, batch: Any, eval_fn: EvalFn) -> Any:
        """Run ``eval_fn`` (forward-only work returning small tensors, such as summed loss
        terms) on ``batch`` in its bucket; a captured graph per key under cuda_graph."""
        return self.switch_bucket(_bucket_key_of(batch)).run_eval(batch, eval_fn)

    def prepare_train_steps(
        self,
        batches: Iterable[Any],
        step_fn: StepFn,
        update: ParameterUpdate | None,
        accumulating: bool = False,
    ) -> None:
        """Capture or compile the step of every batch's key now, in the order given (the
        default, largest key first, so that later keys fit in its memory), without training:
        parameters, gradients and optimizer state stay as they are. The form that applies
        ``update`` is prepared, and with ``accumulating`` (gradient accumulation) the form that
        does not, too. The eager executor has nothing to do."""
        forms = (True, False) if accumulating and update is not None else (update is not None,)
        for batch in batches:
            executor = self.switch_bucket(_bucket_key_of(batch))
            for apply_update in forms:
                executor.prepare_train_step(batch, step_fn, update, apply_update)

    def release_executors(self) -> None:
        """Drop every key's executor (captured graphs, compiled code); they are made again on
        next use. Needed when tensors they captured are replaced (optimizer state loaded)."""
        for executor in self._executors.values():
            executor.release()
        self._executors.clear()
        self.executor_factory.reset()

    def train(self, mode: bool = True) -> BucketingModule:
        super().train(mode)
        for module in self._bucket_modules.values():
            module.train(mode)
        return self

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        # .to(), .cuda(), .double()... must also reach the key-specific buffers (masks, position
        # tables) of the other buckets, which are not registered submodules; each submodule is
        # converted once, so the shared layers are not converted again. Executors are rebuilt
        # on next use since what they captured refers to the old tensors.
        super()._apply(fn, recurse)
        converted = {id(m) for m in self.default_module.modules()}
        for bucket_key, module in self._bucket_modules.items():
            for submodule in module.modules():
                if id(submodule) not in converted:
                    submodule._apply(fn, recurse=False)
                    converted.add(id(submodule))
            self._check_shared_parameters(module, bucket_key)
        self.release_executors()
        return self

    def _generate(self, bucket_key: BucketKey) -> nn.Module:
        module = self.sym_gen(bucket_key)
        if not isinstance(module, nn.Module):
            raise SymGenError(
                f"sym_gen({bucket_key!r}) returned {type(module).__name__}, not a torch.nn.Module"
            )
        return module

    def _check_shared_parameters(self, module: nn.Module, bucket_key: BucketKey) -> None:
        expected = dict(self.default_module.named_parameters())
        got = dict(module.named_parameters())
        how_to_fix = (
            "create the layers once (for the default key) and have sym_gen wrap those same "
            "layers for every key"
        )
        for name, parameter in got.items():
            if name not in expected:
                raise SymGenError(
                    f"sym_gen({bucket_key!r}) made parameter {name!r}, which the default bucket "
                    f"{self.default_bucket_key!r} does not have; {how_to_fix}"
                )
            if parameter is not expected[name]:
                raise SymGenError(
                    f"sym_gen({bucket_key!r}) made a new tensor for parameter {name!r} instead "
                    f"of sharing the default bucket's; {how_to_fix}"
                )
        missing = sorted(expected.keys() - got.keys())
        if missing:
            raise SymGenError(
                f"sym_gen({bucket_key!r}) lacks parameters of the default bucket: {missing}; "
                "every bucket must use all of the shared parameters under the same names"
            )


def _require_hashable(bucket_key: Any) -> None:
    try:
        hash(bucket_key)
    except TypeError:
        raise NmtBucketError(
            f"bucket key {bucket_key!r} is not hashable; use a tuple instead of a list"
        ) from None


def _bucket_key_of(batch: Any) -> BucketKey:
    try:
        return batch.bucket_key
    except AttributeError:
        raise NmtBucketError(
            f"a {type(batch).__name__} has no bucket_key attribute; BucketingModule dispatches "
            "on batch.bucket_key, so give your batch type one"
        ) from None
