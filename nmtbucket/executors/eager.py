"""``executor=eager``: every call runs the Python code of the module and the step."""

from __future__ import annotations

from typing import Any

import torch

from nmtbucket.executors.interface import (
    BucketExecutor,
    StepFn,
    prepare_batch,
    step_and_update,
)
from nmtbucket.executors.update import ParameterUpdate


class EagerExecutor(BucketExecutor):
    """Plain PyTorch. The class is its own :class:`~nmtbucket.executors.interface.ExecutorFactory`:
    eager executors share nothing, so there is no factory object."""

    def forward(self, batch: Any) -> Any:
        return self.module(batch)

    def run_step(
        self, batch: Any, step_fn: StepFn, update: ParameterUpdate | None, apply_update: bool
    ) -> torch.Tensor:
        prepare_batch(step_fn, batch)
        return step_and_update(self.module, batch, step_fn, update, apply_update)
