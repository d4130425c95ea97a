"""How one bucket key's step runs: the executor interface, eager, ``torch.compile`` and CUDA-graph
executors (every key's graphs in one memory pool), and the on-device parameter update they all
apply."""

from nmtbucket.executors.compiled import CompileFactory
from nmtbucket.executors.cuda_graph import CudaGraphFactory
from nmtbucket.executors.eager import EagerExecutor
from nmtbucket.executors.interface import (
    BucketExecutor,
    EvalFn,
    ExecutorFactory,
    PreparingStep,
    StatefulStep,
    StepFn,
)
from nmtbucket.executors.selection import build_executor_factory, resolve_executor
from nmtbucket.executors.update import ParameterUpdate

__all__ = [
    "BucketExecutor",
    "CompileFactory",
    "CudaGraphFactory",
    "EagerExecutor",
    "EvalFn",
    "ExecutorFactory",
    "ParameterUpdate",
    "PreparingStep",
    "StatefulStep",
    "StepFn",
    "build_executor_factory",
    "resolve_executor",
]
