"""``executor=compile``: each bucket key's module through ``torch.compile`` with static shapes.

All keys' modules run the same ``forward`` code, so TorchDynamo compiles it once per key (a
guard on the module and the shapes picks the right one). Its recompile limits would stop at 8
by default and silently fall back to eager code; the factory raises them to the number of
keys, and warns when there are more keys than ``max_keys``: every key costs a compile.

The factory also sets TorchDynamo's ``allow_rnn``, for the whole process: without it every
``nn.LSTM`` call breaks the graph, and the attention decoder's loop over target positions
becomes one small graph per position and key, soon past any recompile limit (measured on the
CPU: 30 graphs for two keys of the tiny LSTM model, against 3 with ``allow_rnn``). With it an
LSTM is traced into its key's graph, which compiles more slowly.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch._dynamo
from torch import nn

from nmtbucket.executors.interface import (
    BucketExecutor,
    EvalFn,
    StepFn,
    prepare_batch,
    step_and_update,
)
from nmtbucket.executors.update import ParameterUpdate

log = logging.getLogger(__name__)


class CompileFactory:
    """Makes a :class:`CompiledExecutor` per key; ``mode`` is ``torch.compile``'s."""

    captures_update = False

    def __init__(self, expected_keys: int, max_keys: int = 32, mode: str = "default") -> None:
        self.max_keys = max_keys
        self.mode = mode
        self.num_keys = 0
        self.compile_seconds = 0.0  # first calls of each key's compiled code, all keys
        torch._dynamo.config.allow_rnn = True
        self._raise_recompile_limits(expected_keys)
        if expected_keys > max_keys:
            self._warn_many_keys(expected_keys)

    def __call__(self, module: nn.Module, bucket_key: Hashable) -> CompiledExecutor:
        self.num_keys += 1
        self._raise_recompile_limits(self.num_keys)
        if self.num_keys == self.max_keys + 1:
            self._warn_many_keys(self.num_keys)
        return CompiledExecutor(module, bucket_key, self)

    def reset(self) -> None:
        """Every executor was released: keys compiled again from now on are counted afresh
        (TorchDynamo's raised limits stay)."""
        self.num_keys = 0

    def _raise_recompile_limits(self, num_keys: int) -> None:
        # forward and backward of every key, in train and eval mode: a few per key
        needed = 4 * num_keys + 8
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, needed)
        config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, needed)

    def _warn_many_keys(self, num_keys: int) -> None:
        warnings.warn(
            f"executor=compile with {num_keys} bucket keys, more than trainer.compile_max_keys="
            f"{self.max_keys}: each key is compiled separately (tens of seconds each). Use "
            "fewer buckets (bucketing.max_buckets) or executor=cuda_graph",
            stacklevel=2,
        )


class CompiledExecutor(BucketExecutor):
    """One key's module compiled with ``dynamic=False``; the step and update around it run as
    Python code (the optimizer is fused already)."""

    def __init__(self, module: nn.Module, bucket_key: Hashable, factory: CompileFactory) -> None:
        super().__init__(module, bucket_key)
        self.factory = factory
        self.compiled: nn.Module = torch.compile(  # type: ignore[assignment]
            module, dynamic=False, mode=factory.mode
        )
        self._compiled_forms: set[tuple[str, bool]] = set()

    def forward(self, batch: Any) -> Any:
        with self._timed_first_call(("forward", self.module.training)):
            return self.compiled(batch)

    def run_step(
        self, batch: Any, step_fn: StepFn, update: ParameterUpdate | None, apply_update: bool
    ) -> torch.Tensor:
        prepare_batch(step_fn, batch)
        with self._timed_first_call(("step", self.module.training)):
            return step_and_update(self.compiled, batch, step_fn, update, apply_update)

    def run_eval(self, batch: Any, eval_fn: EvalFn) -> Any:
        with self._timed_first_call(("eval", self.module.training)):
            return eval_fn(self.compiled, batch)

    @contextmanager
    def _timed_first_call(self, form: tuple[str, bool]) -> Iterator[None]:
        """Add the time of the first call in a form (step, eval or forward; train or eval mode),
        where TorchDynamo compiles, to the factory's ``compile_seconds``."""
        if form in self._compiled_forms:
            yield
            return
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self._compiled_forms.add(form)
        self.factory.compile_seconds += seconds
        log.info("compiled key %s (%s) in %.1f s", self.bucket_key, form, seconds)
