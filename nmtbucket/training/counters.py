"""What a run counts (updates, tokens, time, validations; saved in every checkpoint so a resumed
run continues them), the sums behind each log line, and the limits that end a run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nmtbucket.config import TrainerConfig


@dataclass
class TrainProgress:
    """Counters of a run; saved in every checkpoint (but ``stop_reason``) so a resumed run
    continues them."""

    updates: int = 0
    batches: int = 0
    tgt_tokens: int = 0  # real target tokens trained on (no padding)
    real_tokens: int = 0  # real source + target tokens
    padded_tokens: int = 0  # source + target positions computed, padding included
    train_seconds: float = 0.0  # time in the training loop, validation included
    nonfinite_updates: int = 0
    nonfinite_in_row: int = 0
    validations: int = 0
    validated_update: int = -1  # the update of the last validation (-1: none yet)
    validations_without_improvement: int = 0
    best_score: float | None = None
    stop_reason: str = ""  # why this command stopped training (not saved: not a state)

    @property
    def padding_percent(self) -> float:
        return 100.0 * (1 - self.real_tokens / self.padded_tokens) if self.padded_tokens else 0.0


@dataclass
class IntervalSums:
    """Sums since the last log line."""

    loss_sum: float = 0.0  # the mean loss of each update made, summed (from the update tally)
    made_updates: int = 0  # updates made (not skipped), from the update tally
    max_grad_norm: float = 0.0  # before clipping, from the update tally (NaN: one was)
    tgt_tokens: int = 0
    start: float = field(default_factory=time.monotonic)


def limit_reached(
    config: TrainerConfig,
    progress: TrainProgress,
    epoch: int,
    elapsed: float | None = None,
    elapsed_this_run: float = 0.0,
) -> str | None:
    """Why training must stop now, or None: an update, epoch or time limit (``elapsed``
    seconds in all, ``progress.train_seconds`` when None; ``elapsed_this_run`` since this
    process started), or patience run out."""
    if config.max_updates and progress.updates >= config.max_updates:
        return f"reached trainer.max_updates={config.max_updates}"
    if config.max_epochs and epoch >= config.max_epochs:
        return f"reached trainer.max_epochs={config.max_epochs}"
    seconds = progress.train_seconds if elapsed is None else elapsed
    if config.max_minutes and seconds >= 60 * config.max_minutes:
        return f"reached trainer.max_minutes={config.max_minutes}"
    if config.max_minutes_per_run and elapsed_this_run >= 60 * config.max_minutes_per_run:
        return (
            f"reached trainer.max_minutes_per_run={config.max_minutes_per_run}; run the "
            "same command again to continue"
        )
    if config.patience and progress.validations_without_improvement >= config.patience:
        return (
            f"early stopping: {config.early_stopping_metric} did not improve in "
            f"{config.patience} validations"
        )
    return None
