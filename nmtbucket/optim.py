"""The optimizer (AdamW) and learning-rate schedules: inverse square root, constant and cosine,
each after a linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from nmtbucket.config import CHOICES, TrainerConfig
from nmtbucket.errors import NmtBucketError

SCHEDULES = CHOICES["trainer.schedule"]


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], config: TrainerConfig
) -> torch.optim.AdamW:
    """AdamW with the rate, betas, epsilon and weight decay of ``config``."""
    if len(config.betas) != 2:
        raise NmtBucketError(f"trainer.betas needs two values, got {list(config.betas)}")
    return torch.optim.AdamW(
        parameters,
        lr=config.lr,
        betas=(float(config.betas[0]), float(config.betas[1])),
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


def lr_multiplier(config: TrainerConfig) -> Callable[[int], float]:
    """The factor on ``trainer.lr`` after ``update`` updates (the first update sees update 0).

    * ``inverse_sqrt``: linear warm-up to 1, then ``sqrt(warmup / update)`` (Vaswani et al.).
    * ``constant``: linear warm-up to 1, then 1.
    * ``cosine``: linear warm-up to 1, then a half cosine down to ``min_lr / lr`` at
      ``max_updates`` (which must be set).
    """
    warmup = max(config.warmup_updates, 0)
    if config.schedule not in SCHEDULES:
        raise NmtBucketError(
            f"trainer.schedule must be one of {SCHEDULES}, got {config.schedule!r}"
        )
    if config.schedule == "cosine" and config.max_updates <= warmup:
        raise NmtBucketError(
            "trainer.schedule=cosine needs trainer.max_updates above trainer.warmup_updates "
            f"(got max_updates={config.max_updates}, warmup_updates={warmup})"
        )
    floor = config.min_lr / config.lr if config.lr > 0 else 0.0

    def multiplier(update: int) -> float:
        step = update + 1
        if step <= warmup:
            return step / warmup
        if config.schedule == "inverse_sqrt":
            return math.sqrt(warmup / step) if warmup else 1 / math.sqrt(step)
        if config.schedule == "constant":
            return 1.0
        progress = min((step - warmup) / (config.max_updates - warmup), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainerConfig) -> LambdaLR:
    """Steps once per update, multiplying ``trainer.lr`` by :func:`lr_multiplier`."""
    return LambdaLR(optimizer, lr_multiplier(config))
