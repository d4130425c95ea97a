"""``executor=cuda_graph``: each bucket key's whole training step (forward, backward, clipping
and the optimizer step) captured once into a CUDA graph and replayed, every key's graphs drawing
on one memory pool, as MXNet's bucket executors share the default bucket's memory.

How a step is captured (:meth:`CudaGraphExecutor.run_step` on a key's first batch, or ahead of
training through ``BucketingModule.prepare_train_steps``, default key first):

1. the batch is copied into static buffers (:class:`~nmtbucket.executors.static_batch.StaticBatch`);
2. before the first capture of a step, the step runs a few times on a side stream (warm-up:
   lazy initialisation, optimizer state), with the update forced to skip, and the gradients,
   the step's carried state and the CPU random generator restored after, so warm-up trains
   nothing; later keys are captured without warm-up;
3. the step is captured into the shared pool; each later batch is copied into the buffers and
   the graph replayed. The loss is a static output, cloned after each replay.

Validation runs ``BucketingModule.eval_step`` functions, captured the same way under
``no_grad``; their outputs are small (loss terms), since a graph's outputs stay in the pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils._pytree import tree_map

from nmtbucket.errors import NmtBucketError
from nmtbucket.executors.interface import (
    BucketExecutor,
    EvalFn,
    StatefulStep,
    StepFn,
    prepare_batch,
    step_and_update,
)
from nmtbucket.executors.static_batch import StaticBatch, batch_signature
from nmtbucket.executors.update import ParameterUpdate

log = logging.getLogger(__name__)


class Capture(Protocol):
    """Warms ``run`` up ``warmup_runs`` times, captures it into ``pool`` and returns a function
    that replays it, with ``run``'s output from the capture: the static output each replay
    rewrites in place."""

    def __call__(
        self, run: Callable[[], Any], warmup_runs: int, pool: Any
    ) -> tuple[Callable[[], None], Any]: ...


def capture_cuda_graph(
    run: Callable[[], Any], warmup_runs: int, pool: Any
) -> tuple[Callable[[], None], Any]:
    """:class:`Capture` with ``torch.cuda.CUDAGraph``, warm-up on a side stream as PyTorch asks."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup_runs):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        output = run()
    return graph.replay, output


@dataclass
class CaptureRecord:
    """One captured graph, for logs and benchmarks."""

    bucket_key: Hashable
    kind: str  # "step+update", "step" or "eval"
    seconds: float
    warmup_runs: int


class CudaGraphFactory:
    """The executor factory of ``executor=cuda_graph``: owns the memory pool all keys share.

    ``share_pool=False`` gives every graph its own pool (to measure what sharing saves).
    ``capture`` and ``new_pool`` are CUDA's; tests on the CPU pass stand-ins.
    """

    captures_update = True

    def __init__(
        self,
        warmup_runs: int = 3,
        warmup_every_key: bool = False,
        share_pool: bool = True,
        capture: Capture = capture_cuda_graph,
        new_pool: Callable[[], Any] = torch.cuda.graph_pool_handle,
    ) -> None:
        if warmup_runs < 1:
            raise NmtBucketError(f"cuda_graph warm-up runs must be >= 1, got {warmup_runs}")
        self.warmup_runs = warmup_runs
        self.warmup_every_key = warmup_every_key
        self.share_pool = share_pool
        self._warmed_up: set[Hashable] = set()
        self.capture = capture
        self.new_pool = new_pool
        self.records: list[CaptureRecord] = []
        self._pool: Any = None

    def __call__(self, module: nn.Module, bucket_key: Hashable) -> CudaGraphExecutor:
        return CudaGraphExecutor(module, bucket_key, self)

    @property
    def capture_seconds(self) -> float:
        """Time spent warming up and capturing, all graphs together."""
        return sum(r.seconds for r in self.records)

    def warmup_runs_for(self, form: Hashable) -> int:
        """Warm-up runs before capturing a graph of ``form`` (a step or evaluation function
        with what it updates): ``warmup_runs`` until one capture of the form succeeded, then
        none unless ``warmup_every_key``. What warm-up initialises (optimizer state, library
        handles and cuDNN's dropout state, a step's buffers) does not depend on the key, and a
        warm-up outside the pool would need the key's memory a second time."""
        if form in self._warmed_up and not self.warmup_every_key:
            return 0
        return self.warmup_runs

    def captured(self, form: Hashable) -> None:
        """A graph of ``form`` was captured after its warm-up."""
        self._warmed_up.add(form)

    def reset(self) -> None:
        """After every executor was released (a checkpoint loaded, the model moved): the next
        capture starts a new pool and warms up again, since what warm-up made may be gone."""
        self._pool = None
        self._warmed_up.clear()

    def pool_for_next_graph(self) -> Any:
        """The shared pool (made on first use), or a new pool for every graph."""
        if not self.share_pool:
            return self.new_pool()
        if self._pool is None:
            self._pool = self.new_pool()
        return self._pool


@dataclass
class _Graph:
    static: StaticBatch
    replay: Callable[[], None]
    output: Any


class CudaGraphExecutor(BucketExecutor):
    """One key's graphs: a training step per form (with or without the update) and an
    evaluation graph per evaluation function, batch signature and mode. All live until
    :meth:`release`."""

    def __init__(self, module: nn.Module, bucket_key: Hashable, factory: CudaGraphFactory) -> None:
        super().__init__(module, bucket_key)
        self.factory = factory
        self._graphs: dict[Hashable, _Graph] = {}

    def run_step(
        self, batch: Any, step_fn: StepFn, update: ParameterUpdate | None, apply_update: bool
    ) -> torch.Tensor:
        graph = self._step_graph(batch, step_fn, update, apply_update)
        prepare_batch(step_fn, batch)  # after any capture, whose warm-up restores step state
        graph.static.load(batch)
        graph.replay()
        return graph.output.clone()

    def prepare_train_step(
        self, batch: Any, step_fn: StepFn, update: ParameterUpdate | None, apply_update: bool
    ) -> None:
        self._step_graph(batch, step_fn, update, apply_update)

    def forward(self, batch: Any) -> Any:
        """Eager: a graph's output stays allocated in the pool for the graph's lifetime, and
        whole logits per key would fill it. Evaluation uses :meth:`run_eval` graphs instead."""
        return self.module(batch)

    def run_eval(self, batch: Any, eval_fn: EvalFn) -> Any:
        if torch.is_grad_enabled():  # a caller who wants to back-propagate: no graph
            return eval_fn(self.module, batch)
        mode = (self.module.training, torch.is_inference_mode_enabled())
        key = ("eval", batch_signature(batch), eval_fn, mode)
        graph = self._graphs.get(key)
        if graph is None:
            static = StaticBatch(batch)
            with _random_state_kept():
                graph = self._capture(
                    "eval", (eval_fn, mode), static, lambda: eval_fn(self.module, static.batch)
                )
            self._graphs[key] = graph
        graph.static.load(batch)
        graph.replay()
        return _cloned(graph.output)

    def release(self) -> None:
        self._graphs.clear()

    def _step_graph(
        self, batch: Any, step_fn: StepFn, update: ParameterUpdate | None, apply_update: bool
    ) -> _Graph:
        if update is None:
            raise NmtBucketError(
                "executor=cuda_graph captures the parameter update with the step: pass a "
                "ParameterUpdate to train_step (or use executor=eager)"
            )
        key = ("step", batch_signature(batch), apply_update, step_fn, update)
        graph = self._graphs.get(key)
        if graph is None:
            static = StaticBatch(batch)
            kind = "step+update" if apply_update else "step"

            def run() -> torch.Tensor:
                return step_and_update(self.module, static.batch, step_fn, update, apply_update)

            with _training_state_kept(update, step_fn):
                prepare_batch(step_fn, static.batch)  # buffers the step reads exist before capture
                graph = self._capture(kind, (kind, step_fn, update), static, run)
            self._graphs[key] = graph
        return graph

    def _capture(
        self, kind: str, form: Hashable, static: StaticBatch, run: Callable[[], Any]
    ) -> _Graph:
        started = time.perf_counter()
        pool = self.factory.pool_for_next_graph()
        warmup_runs = self.factory.warmup_runs_for(form)
        replay, output = self.factory.capture(run, warmup_runs, pool)
        self.factory.captured(form)
        seconds = time.perf_counter() - started
        self.factory.records.append(CaptureRecord(self.bucket_key, kind, seconds, warmup_runs))
        log.info(
            "captured the %s graph of key %s in %.2f s (%d warm-up runs)",
            kind,
            self.bucket_key,
            seconds,
            warmup_runs,
        )
        return _Graph(static, replay, output)


@contextmanager
def _training_state_kept(update: ParameterUpdate, step_fn: StepFn) -> Iterator[None]:
    """Warm-up runs the real step: force its update to skip, and put back afterwards the
    gradients accumulated so far, the update's tally, the state the step carries (a language
    model's) and the CPU random generator, so a capture changes no parameter, count or carried
    state."""
    saved = update.snapshot()
    stateful = step_fn if isinstance(step_fn, StatefulStep) else None
    step_state = {} if stateful is None else _cloned(stateful.state_dict())
    try:
        with update.forcing_skip(), _random_state_kept():
            yield
    finally:
        update.restore(saved)
        if stateful is not None:
            stateful.load_state_dict(step_state)


@contextmanager
def _random_state_kept() -> Iterator[None]:
    """Put back the CPU random generator that warm-up runs may draw from. The CUDA generators
    are left alone: setting their state makes cuDNN rebuild its LSTM dropout state on the next
    call, with a host synchronisation (illegal in a capture) into a new buffer (which graphs
    captured before would no longer see). Warm-up thus advances the CUDA random stream."""
    cpu = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(cpu)


def _cloned(tree: Any) -> Any:
    """``tree`` with every tensor in it cloned."""
    return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, tree)
