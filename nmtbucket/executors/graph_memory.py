"""What captured CUDA graphs cost in device memory: peak allocated and reserved bytes of a whole
training state (model, gradients, optimizer, static buffers, graphs) once the steps of the
given keys are captured, with one pool shared by every graph or one pool per graph. For the
training benchmark and the GPU tests; training itself never measures this."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from nmtbucket.executors.cuda_graph import CudaGraphFactory
from nmtbucket.executors.interface import StepFn
from nmtbucket.executors.update import ParameterUpdate


class CapturingModel(Protocol):
    """What the study needs of a model (a BucketingModule): capture ahead, release."""

    def prepare_train_steps(
        self, batches: Sequence[Any], step_fn: StepFn, update: ParameterUpdate | None
    ) -> None: ...

    def release_executors(self) -> None: ...


TrainingBuilder = Callable[[CudaGraphFactory], tuple[CapturingModel, StepFn, ParameterUpdate]]
"""Builds a model on the GPU with the given executor factory, its step and its update."""


@dataclass
class CaptureMemory:
    """Peak device memory (bytes) from an empty start to every listed key captured."""

    keys: int
    graphs: int
    share_pool: bool
    peak_allocated: int
    peak_reserved: int
    capture_seconds: float

    def as_dict(self) -> dict[str, Any]:
        mib = 2**20
        return {
            "keys": self.keys,
            "graphs": self.graphs,
            "share_pool": self.share_pool,
            "peak_allocated_mib": round(self.peak_allocated / mib, 1),
            "peak_reserved_mib": round(self.peak_reserved / mib, 1),
            "capture_seconds": round(self.capture_seconds, 3),
        }


def measure_capture_memory(
    build: TrainingBuilder, examples: Sequence[Any], share_pool: bool, warmup_runs: int = 3
) -> CaptureMemory:
    """Build a fresh training state, capture the step of each of ``examples`` (one batch per
    key, in this order), and return the peaks; everything is freed again before returning.
    Nothing else should hold device memory while it runs: the peaks are absolute."""
    _free_device_memory()
    torch.cuda.reset_peak_memory_stats()
    factory = CudaGraphFactory(warmup_runs=warmup_runs, share_pool=share_pool)
    model, step, update = build(factory)
    model.prepare_train_steps(examples, step, update)
    torch.cuda.synchronize()
    result = CaptureMemory(
        keys=len(examples),
        graphs=len(factory.records),
        share_pool=share_pool,
        peak_allocated=torch.cuda.max_memory_allocated(),
        peak_reserved=torch.cuda.max_memory_reserved(),
        capture_seconds=factory.capture_seconds,
    )
    model.release_executors()
    del model, step, update, factory
    _free_device_memory()
    return result


def _free_device_memory() -> None:
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
