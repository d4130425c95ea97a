"""The one evaluation loop: a model scored on a held-out split's fixed, bucketed batches, with the
task's evaluation function giving each batch's summed negative log-likelihood; what an
evaluation measured (:class:`SplitScores`); and perplexity from it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.config import EARLY_STOPPING_METRICS
from nmtbucket.console import progress_bar
from nmtbucket.errors import NmtBucketError

BatchNll = Callable[[BucketingModule, Any], tuple[torch.Tensor, torch.Tensor]]
"""A task's scoring of one batch already on the device: the summed negative log-likelihood of
its targets and their count (0-d tensors), usually ``model.eval_step(batch, eval_fn)``."""


@dataclass
class SplitScores:
    """What one evaluation of a split measured: the loss every task has. A task with more
    scores (translation: BLEU and chrF) extends it and its methods."""

    split: str
    loss: float  # mean negative log-likelihood per target token (no label smoothing)
    perplexity: float
    num_tokens: int

    def metric(self, name: str) -> float:
        """The value of ``name``, one of ``EARLY_STOPPING_METRICS``, for early stopping."""
        value = self.as_dict().get(name) if name in EARLY_STOPPING_METRICS else None
        if not isinstance(value, int | float):
            measured = [m for m in EARLY_STOPPING_METRICS if self.as_dict().get(m) is not None]
            raise NmtBucketError(
                f"early-stopping metric {name!r} was not computed on {self.split}; stop early "
                f"on one of {measured}"
            )
        return float(value)

    def as_dict(self) -> dict[str, float | int | str | None]:
        """The numbers, for the metrics file."""
        return {"loss": self.loss, "perplexity": self.perplexity, "num_tokens": self.num_tokens}

    def describe(self) -> str:
        """One line for the log."""
        return f"loss {self.loss:.4f}, perplexity {self.perplexity:.2f}"

    def results(self, role: str) -> dict[str, Any]:
        """The ``results.json`` entries of this split, named by its ``role`` (test, valid)."""
        return {
            f"{role}_split": self.split,
            f"{role}_loss": self.loss,
            f"{role}_perplexity": self.perplexity,
            f"{role}_tokens": self.num_tokens,
        }

    def signatures(self) -> list[str]:
        """How the scores were computed, to report beside them (none for the loss alone)."""
        return []

    def summary(self) -> list[str]:
        """Lines of the end-of-run summary (after the split's name and weights)."""
        return [f"perplexity {self.perplexity:.2f} ({self.num_tokens} tokens)"]


class HeldOutBatches(Protocol):
    """A held-out split's fixed batches: iterated in full, their number known."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...


class SplitEvaluator(Protocol):
    """Scores a model on one held-out split: what the trainer validates with."""

    def evaluate(self, model: BucketingModule) -> SplitScores: ...


def perplexity(nll_sum: float, num_tokens: int) -> float:
    """``exp(nll_sum / num_tokens)`` from a natural-log sum; ``inf`` when that overflows."""
    if num_tokens <= 0:
        raise ValueError(f"perplexity needs at least one token, got {num_tokens}")
    try:
        return math.exp(nll_sum / num_tokens)
    except OverflowError:
        return math.inf


@contextmanager
def evaluation_mode(model: BucketingModule) -> Iterator[None]:
    """Within: ``model`` in eval mode under ``torch.inference_mode``; its training mode is put
    back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def score_batches(
    model: BucketingModule,
    split: str,
    batches: HeldOutBatches,
    batch_nll: BatchNll,
    device: torch.device,
    show_progress: bool,
) -> SplitScores:
    """Loss and perplexity of ``model`` in :func:`evaluation_mode` over every batch of
    ``batches`` (each moved to ``device``, scored by ``batch_nll``), with a progress bar."""
    nll_sum, num_tokens = 0.0, 0
    label = f"score {split}"
    with (
        evaluation_mode(model),
        progress_bar(len(batches), label, enabled=show_progress, unit="batch") as bar,
    ):
        for batch in batches:
            batch_nll_sum, batch_tokens = batch_nll(model, batch.to(device))
            nll_sum += float(batch_nll_sum)
            num_tokens += int(batch_tokens)
            bar.update(1)
    return SplitScores(
        split=split,
        loss=nll_sum / max(num_tokens, 1),
        perplexity=perplexity(nll_sum, num_tokens),
        num_tokens=num_tokens,
    )
