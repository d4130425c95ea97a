"""ParameterUpdate: the device-side update every executor runs (clipping, the non-finite skip,
the fused optimizer step, zeroed gradients), the learning rate as a device tensor, and the
loss normaliser a captured step reads."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nmtbucket.config import TrainerConfig
from nmtbucket.executors.update import ParameterUpdate
from nmtbucket.training.optim import (
    after_loading,
    build_optimizer,
    build_scheduler,
    implementation_settings,
)
from nmtbucket.training.step import DeviceScalar
from nmtbucket.translation.step import Seq2SeqStep


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def _backward(model: nn.Module, scale: float = 1.0) -> torch.Tensor:
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    loss = model(x).pow(2).sum() * scale
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("capturable", [False, True])
def test_an_update_equals_clipping_then_the_plain_optimizer(
    optimizer: str, capturable: bool
) -> None:
    config = TrainerConfig(optimizer=optimizer, lr=0.05, clip_norm=0.3, weight_decay=0.01)
    model, reference = _model(), _model()
    update = ParameterUpdate(
        model.parameters(), build_optimizer(model.parameters(), config, capturable), 0.3
    )
    plain = (
        torch.optim.AdamW(reference.parameters(), lr=0.05, betas=(0.9, 0.98), weight_decay=0.01)
        if optimizer == "adamw"
        else torch.optim.SGD(reference.parameters(), lr=0.05, weight_decay=0.01)
    )
    for _ in range(3):
        update.note_loss(_backward(model))
        update.apply()
        assert update.made
        _backward(reference)
        norm = nn.utils.clip_grad_norm_(reference.parameters(), 0.3)
        plain.step()
        plain.zero_grad()
        assert float(update.grad_norm) == pytest.approx(float(norm), rel=1e-5)
    for got, expected in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert all(float(g.abs().sum()) == 0 for g in update.grads)  # zeroed in place


@pytest.mark.parametrize("bad", ["loss", "gradient"])
def test_a_non_finite_loss_or_gradient_skips_the_update_and_changes_nothing(bad: str) -> None:
    model = _model()
    optimizer = build_optimizer(model.parameters(), TrainerConfig(lr=0.05))
    update = ParameterUpdate(model.parameters(), optimizer, clip_norm=1.0)
    update.note_loss(_backward(model))
    update.apply()
    before = [p.detach().clone() for p in model.parameters()]
    state = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in model.parameters()]
    loss = _backward(model, scale=float("inf") if bad == "gradient" else 1.0)
    update.note_loss(torch.tensor(float("nan")) if bad == "loss" else loss)
    update.apply()
    assert not update.made
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)
    for p, saved in zip(model.parameters(), state, strict=True):
        assert all(torch.equal(optimizer.state[p][k], v) for k, v in saved.items())
    update.note_loss(_backward(model))  # the next window starts clean
    update.apply()
    assert update.made


def test_warm_up_may_force_a_skip_and_gradients_can_be_put_back() -> None:
    model = _model()
    update = ParameterUpdate(
        model.parameters(), build_optimizer(model.parameters(), TrainerConfig()), 1.0
    )
    _backward(model)
    update.record_micro_batch(update_applied=False)
    saved = update.snapshot()
    kept = [g.clone() for g in update.grads]
    with update.forcing_skip():
        update.apply()  # zeroes the gradients
    assert not update.made
    update.restore(saved)
    for g, k in zip(update.grads, kept, strict=True):
        assert torch.equal(g, k)


def test_the_update_refuses_unfused_optimizers_and_replaced_gradients() -> None:
    model = _model()
    with pytest.raises(ValueError, match="fused optimizer"):
        ParameterUpdate(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), 1.0)
    update = ParameterUpdate(
        model.parameters(), build_optimizer(model.parameters(), TrainerConfig()), 1.0
    )
    model.zero_grad(set_to_none=True)
    with pytest.raises(RuntimeError, match="owns the gradient tensors"):
        update.apply()


def test_the_learning_rate_is_a_device_tensor_filled_in_place_and_kept_after_loading() -> None:
    model = _model()
    config = TrainerConfig(lr=0.1, warmup_updates=4, schedule="constant")
    optimizer = build_optimizer(model.parameters(), config, capturable=True)
    lr = optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor)
    scheduler = build_scheduler(optimizer, config)
    assert scheduler.base_lrs == [0.1]  # floats: a scheduler step reads nothing back
    optimizer.step()  # no gradients: nothing changes, but the scheduler expects a step first
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(0.05)
    # a checkpoint from before the fused optimizer: float rate, no fused/capturable settings
    old_model = _model()
    old = torch.optim.AdamW(old_model.parameters(), lr=0.025, betas=(0.9, 0.98))
    _backward(old_model)
    old.step()  # its state: moments and a step count kept on the CPU
    built = implementation_settings(optimizer)
    optimizer.load_state_dict(old.state_dict())
    after_loading(optimizer, built)
    group = optimizer.param_groups[0]
    assert group["fused"] and group["capturable"]
    assert isinstance(group["lr"], torch.Tensor) and float(group["lr"]) == pytest.approx(0.025)
    steps = [optimizer.state[p]["step"] for p in model.parameters()]
    assert all(s.dtype == torch.float32 and float(s) == 1 for s in steps)
    update = ParameterUpdate(model.parameters(), optimizer, clip_norm=1.0)
    update.note_loss(_backward(model))
    update.apply()  # the fused step with found_inf works after the load
    assert update.made


def test_the_normaliser_is_one_tensor_per_device_filled_in_place() -> None:
    scalar = DeviceScalar(2.0)
    tensor = scalar.on(torch.device("cpu"))
    scalar.value = 8.0
    assert scalar.on(torch.device("cpu")) is tensor and float(tensor) == 8.0
    step = Seq2SeqStep(label_smoothing=0.0)
    step.normalizer = 3.0
    assert step.normalizer == 3.0 and float(step.normalizer_on(torch.device("cpu"))) == 3.0


def test_the_tally_counts_updates_losses_and_runs_of_skips_until_read() -> None:
    model = _model()
    update = ParameterUpdate(
        model.parameters(), build_optimizer(model.parameters(), TrainerConfig()), 1.0
    )
    outcomes = []  # per update: the micro-batch losses
    for losses in ([1.0, 3.0], [float("nan"), 2.0], [float("inf")], [5.0]):
        for loss in losses:
            _backward(model)
            update.note_loss(torch.tensor(loss))
        update.apply()
        outcomes.append(update.made)
    assert outcomes == [True, False, False, True]
    first = update.tally.read()
    assert (first.made, first.skipped, first.skipped_in_row, first.longest_skipped_run) == (
        2, 2, 0, 2,
    )  # fmt: skip
    assert first.loss_sum == pytest.approx(2.0 + 5.0) and first.mean_loss == pytest.approx(3.5)
    assert 0 < first.max_grad_norm < math.inf
    update.note_loss(torch.tensor(float("nan")))
    update.apply()
    second = update.tally.read()  # a new interval, inside a run of skips
    assert (second.made, second.skipped, second.skipped_in_row) == (0, 1, 1)
    assert second.longest_skipped_run == 1 and math.isnan(second.mean_loss)
    assert second.max_grad_norm == 0.0  # no gradient since the first read: zeros
    update.tally.continue_run(3)  # as after a resume
    update.note_loss(torch.tensor(float("nan")))
    update.apply()
    assert update.tally.read().longest_skipped_run == 4


def test_warm_up_leaves_the_tally_as_it_was() -> None:
    model = _model()
    update = ParameterUpdate(
        model.parameters(), build_optimizer(model.parameters(), TrainerConfig()), 1.0
    )
    update.note_loss(_backward(model))
    update.apply()
    update.note_loss(torch.tensor(2.0))  # the first micro-batch of a window in progress
    update.record_micro_batch(update_applied=False)
    saved = update.snapshot()
    with update.forcing_skip():
        update.note_loss(torch.tensor(float("nan")))
        update.apply()
    update.restore(saved)
    update.note_loss(torch.tensor(4.0))  # the window's last micro-batch
    update.apply()
    reading = update.tally.read()
    assert (reading.made, reading.skipped, reading.longest_skipped_run) == (2, 0, 0)
    first = reading.loss_sum - 3.0  # the window's mean is (2 + 4) / 2
    assert first == pytest.approx(float(_backward(_model())))
