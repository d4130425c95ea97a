"""The optimizer (AdamW, or plain SGD for the Zaremba et al. language models), learning-rate
schedules (inverse square root, constant, cosine and per-epoch decay, each after a linear
warm-up), and :func:`build_optimization`, which puts them together with the on-device update."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from nmtbucket.config import CHOICES, TrainerConfig
from nmtbucket.distributed import Ranks
from nmtbucket.errors import NmtBucketError
from nmtbucket.executors.update import ParameterUpdate

SCHEDULES = CHOICES["trainer.schedule"]


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], config: TrainerConfig, capturable: bool = False
) -> torch.optim.Optimizer:
    """``trainer.optimizer``: AdamW with the rate, betas, epsilon and weight decay of
    ``config``, or SGD with its rate and weight decay.

    Always the fused implementation, which takes a skip decision as a device tensor (see
    :class:`~nmtbucket.executors.update.ParameterUpdate`), with the learning rate a 0-d tensor
    on the parameters' device that the scheduler fills in place (see :func:`after_loading`): a
    captured graph reads the current rate, and eager and captured runs compute identically.
    ``capturable``: ready to be captured in a CUDA graph."""
    parameters = list(parameters)
    lr = torch.tensor(config.lr, device=parameters[0].device)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer != "adamw":
        raise NmtBucketError(
            f"trainer.optimizer must be one of {CHOICES['trainer.optimizer']}, "
            f"got {config.optimizer!r}"
        )
    if len(config.betas) != 2:
        raise NmtBucketError(f"trainer.betas needs two values, got {list(config.betas)}")
    return torch.optim.AdamW(
        parameters,
        lr=lr,
        betas=(float(config.betas[0]), float(config.betas[1])),
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=True,
        capturable=capturable,
    )


IMPLEMENTATION_SETTINGS = ("fused", "capturable", "foreach", "differentiable")
"""Optimizer group settings that say how a step runs, not what it computes."""


def implementation_settings(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each group's :data:`IMPLEMENTATION_SETTINGS`, to put back with :func:`after_loading`."""
    return [
        {key: group[key] for key in IMPLEMENTATION_SETTINGS if key in group}
        for group in optimizer.param_groups
    ]


def after_loading(optimizer: torch.optim.Optimizer, settings: list[dict[str, Any]]) -> None:
    """Undo what ``optimizer.load_state_dict`` takes from the checkpoint but must stay as
    built: the implementation ``settings`` (a checkpoint from an unfused or uncaptured run
    would turn off ``fused`` or ``capturable``) and the learning rate as a 0-d tensor on the
    parameters' device (the saved value is kept), with each parameter's step count there too."""
    for group, built in zip(optimizer.param_groups, settings, strict=True):
        group.update(built)
        group["lr"] = torch.tensor(float(group["lr"]), device=group["params"][0].device)
        for parameter in group["params"]:  # an unfused checkpoint keeps its step on the CPU
            state = optimizer.state.get(parameter, {})
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].to(parameter.device, torch.float32)


def lr_multiplier(
    config: TrainerConfig, epoch_of: Callable[[], int] | None = None
) -> Callable[[int], float]:
    """The factor on ``trainer.lr`` after ``update`` updates (the first update sees update 0).

    * ``inverse_sqrt``: linear warm-up to 1, then ``sqrt(warmup / update)`` (Vaswani et al.).
    * ``constant``: linear warm-up to 1, then 1.
    * ``cosine``: linear warm-up to 1, then a half cosine down to ``min_lr / lr`` at
      ``max_updates`` (which must be set).
    * ``epoch_decay``: linear warm-up to 1; 1 for the first ``full_lr_epochs`` epochs, then
      ``lr_decay`` times the previous epoch's (Zaremba et al.: epoch ``e``, counted from 0, has
      ``lr_decay ** max(0, e + 1 - full_lr_epochs)``). The epoch is ``epoch_of()``, the epoch of
      the batches the next update trains, so accumulation windows do not shift the decay.
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
    if config.schedule == "epoch_decay" and epoch_of is None:
        raise NmtBucketError(
            "trainer.schedule=epoch_decay needs to know the training epoch (epoch_of, which "
            "the training pipeline passes); use a per-update schedule"
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
        if config.schedule == "epoch_decay":
            assert epoch_of is not None
            return config.lr_decay ** max(0, epoch_of() + 1 - config.full_lr_epochs)
        progress = min((step - warmup) / (config.max_updates - warmup), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: TrainerConfig,
    epoch_of: Callable[[], int] | None = None,
) -> LambdaLR:
    """Steps once per update, multiplying ``trainer.lr`` by :func:`lr_multiplier`. The base
    rates are floats, so a step computes the rate on the host and fills the device tensor
    without reading it back."""
    scheduler = LambdaLR(optimizer, lr_multiplier(config, epoch_of))
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["initial_lr"] = config.lr
    return scheduler


@dataclass
class Optimization:
    """What changes the parameters: the optimizer, its learning-rate schedule (stepped once per
    update) and the on-device update that clips and applies the gradients with it."""

    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    update: ParameterUpdate


def build_optimization(
    parameters: Iterable[torch.nn.Parameter],
    config: TrainerConfig,
    capturable: bool,
    epoch_of: Callable[[], int] | None = None,
    ranks: Ranks | None = None,
) -> Optimization:
    """The optimizer, schedule and update of ``trainer.*`` for ``parameters``; ``capturable``
    when the executors capture the update (``ExecutorFactory.captures_update``), ``epoch_of``
    the epoch of the next batch (for ``schedule=epoch_decay``), ``ranks`` the training
    processes whose gradients each update sums."""
    parameters = list(parameters)
    optimizer = build_optimizer(parameters, config, capturable)
    update = ParameterUpdate(parameters, optimizer, config.clip_norm, ranks)
    return Optimization(optimizer, build_scheduler(optimizer, config, epoch_of), update)
