"""Learning-rate schedules: warm-up, then inverse square root, constant or cosine."""

from __future__ import annotations

import math

import pytest
import torch

from nmtbucket.config import TrainerConfig
from nmtbucket.errors import NmtBucketError
from nmtbucket.training.optim import build_optimizer, build_scheduler, lr_multiplier


def test_inverse_sqrt_warms_up_then_decays() -> None:
    f = lr_multiplier(TrainerConfig(schedule="inverse_sqrt", warmup_updates=4))
    assert [f(u) for u in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(15) == pytest.approx(math.sqrt(4 / 16))


def test_constant_and_cosine() -> None:
    constant = lr_multiplier(TrainerConfig(schedule="constant", warmup_updates=2))
    assert [constant(u) for u in (0, 1, 2, 1000)] == [0.5, 1.0, 1.0, 1.0]
    cosine = lr_multiplier(
        TrainerConfig(schedule="cosine", warmup_updates=2, max_updates=12, lr=1.0, min_lr=0.1)
    )
    assert cosine(1) == 1.0
    assert cosine(6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert cosine(11) == pytest.approx(0.1)
    assert cosine(50) == pytest.approx(0.1)


def test_schedule_errors_name_the_option() -> None:
    with pytest.raises(NmtBucketError, match=r"trainer\.schedule must be one of"):
        lr_multiplier(TrainerConfig(schedule="linear"))
    with pytest.raises(NmtBucketError, match=r"cosine needs trainer\.max_updates"):
        lr_multiplier(TrainerConfig(schedule="cosine", max_updates=0))


def test_scheduler_drives_the_optimizer_rate() -> None:
    config = TrainerConfig(lr=0.01, warmup_updates=2, schedule="inverse_sqrt")
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer([weight], config)
    scheduler = build_scheduler(optimizer, config)
    rates = []
    for _ in range(4):
        rates.append(float(optimizer.param_groups[0]["lr"]))  # a device tensor
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.005, 0.01, 0.01 * math.sqrt(2 / 3), 0.01 * math.sqrt(2 / 4)])
