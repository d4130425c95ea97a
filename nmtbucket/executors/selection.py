"""``trainer.executor``: which executor factory runs each bucket key's step on a device."""

from __future__ import annotations

import torch

from nmtbucket.config import CHOICES, TrainerConfig
from nmtbucket.errors import NmtBucketError
from nmtbucket.executors.compiled import CompileFactory
from nmtbucket.executors.cuda_graph import CudaGraphFactory
from nmtbucket.executors.eager import EagerExecutor
from nmtbucket.executors.interface import ExecutorFactory


def resolve_executor(name: str, device: torch.device) -> str:
    """``auto`` is ``cuda_graph`` on a CUDA device and ``eager`` elsewhere; ``cuda_graph`` on
    another device is an error."""
    if name not in CHOICES["trainer.executor"]:
        raise NmtBucketError(
            f"trainer.executor must be one of {CHOICES['trainer.executor']}, got {name!r}"
        )
    if name == "auto":
        return "cuda_graph" if device.type == "cuda" else "eager"
    if name == "cuda_graph" and device.type != "cuda":
        raise NmtBucketError(
            f"trainer.executor=cuda_graph needs a CUDA device, but training runs on {device}; "
            "use trainer.executor=auto (eager on the CPU), eager or compile"
        )
    return name


def build_executor_factory(
    config: TrainerConfig, device: torch.device, num_keys: int
) -> ExecutorFactory:
    """The factory ``config.executor`` names for a model of ``num_keys`` bucket keys."""
    name = resolve_executor(config.executor, device)
    if name == "cuda_graph":
        return CudaGraphFactory(config.graph_warmup_runs, config.graph_warmup_every_key)
    if name == "compile":
        return CompileFactory(num_keys, config.compile_max_keys, config.compile_mode)
    return EagerExecutor
