"""The parameter update after an accumulation window, done entirely with tensor operations on
the parameters' device (no host synchronisation), so a CUDA-graph executor can capture it with
the last micro-batch's forward and backward: the sum of the gradients over the ranks (under
torchrun), gradient norm, clipping, a skip when any loss or the gradient is NaN or infinite,
the optimizer step and the zeroing of the gradients."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from nmtbucket.distributed import Ranks, all_reduce_
from nmtbucket.executors.update_tally import UpdateTally


@dataclass
class UpdateSnapshot:
    """What :meth:`ParameterUpdate.restore` puts back after a graph executor's warm-up."""

    grads: list[torch.Tensor] | None  # None: no window was pending, the gradients were zeros
    nonfinite_loss: torch.Tensor
    tally: torch.Tensor


class ParameterUpdate:
    """Clips and applies the accumulated gradients of ``parameters`` with ``optimizer``.

    The gradients live in tensors allocated here once and never replaced: backward adds into
    them, :meth:`apply` zeroes them in place. Captured graphs therefore all read and write the
    same gradient memory, whichever bucket key they belong to. They are views of one flat
    buffer per dtype and device, so that under several ``ranks`` an update sums them over the
    ranks with one all-reduce per buffer (and only at the update: the micro-batches before the
    last of an accumulation window never communicate). Each rank's loss is divided by the
    normaliser of the whole step, all ranks together, so the sum is the gradient one process
    would compute on all of their rows. A non-finite loss on any rank travels in a spare last
    element of the first buffer, so that every rank skips the same updates.

    An update is skipped, leaving parameters and optimizer state untouched, when a loss noted
    by :meth:`note_loss` since the last update, or the gradient norm, is not finite. The
    optimizer must be a fused one (``fused=True``): it takes the skip as its ``found_inf``
    tensor, as under mixed-precision loss scaling, so the decision never leaves the device.
    After :meth:`apply`, :attr:`grad_norm` (before clipping) and :attr:`skipped` (1.0 or 0.0)
    hold the outcome, and :attr:`tally` has counted it with the window's losses: the training
    loop reads the tally once per log interval, never an update's outcome (see
    :mod:`~nmtbucket.executors.update_tally`).
    """

    def __init__(
        self,
        parameters: Iterable[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        clip_norm: float,
        ranks: Ranks | None = None,
    ) -> None:
        self.parameters = [p for p in parameters if p.requires_grad]
        if not self.parameters:
            raise ValueError("ParameterUpdate needs at least one trainable parameter")
        if not all(group.get("fused") for group in optimizer.param_groups):
            raise ValueError(
                f"ParameterUpdate needs a fused optimizer (fused=True), got "
                f"{type(optimizer).__name__} without it"
            )
        self.optimizer = optimizer
        self.clip_norm = clip_norm
        self.ranks = ranks or Ranks()
        device = self.parameters[0].device
        self.flat_grads = _flat_gradients(self.parameters)  # (n + 1,) per dtype and device
        self.grads: list[torch.Tensor] = [p.grad for p in self.parameters]  # type: ignore[misc]
        self.nonfinite_loss = torch.zeros((), device=device)  # 1.0 once a loss was not finite
        self.grad_norm = torch.zeros((), device=device)
        self.skipped = torch.zeros((), device=device)  # the optimizer's found_inf
        # 1.0 inside forcing_skip(), while a graph executor warms up and captures: the step
        # runs, nothing changes. A tensor, not a flag: a captured update reads it at every replay.
        self.force_skip = torch.zeros((), device=device)
        self.tally = UpdateTally(device)
        self._pending = False  # host side: a window's gradients wait for their update

    def note_loss(self, loss: torch.Tensor) -> None:
        """Remember whether ``loss`` (0-d) is NaN or infinite, for the next :meth:`apply`."""
        bad = (~torch.isfinite(loss.detach().float())).float()
        torch.maximum(self.nonfinite_loss, bad, out=self.nonfinite_loss)
        self.tally.note_loss(loss)

    def apply(self) -> None:
        """Clip, step (or skip) and zero the gradients; see :attr:`grad_norm`, :attr:`skipped`."""
        self._check_gradients_kept()
        if self.ranks.distributed:
            self._sum_over_ranks()
        norm = torch.nn.utils.get_total_norm(self.grads)  # 0-d, float32
        if self.clip_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.parameters, self.clip_norm, norm)
        bad_norm = (~torch.isfinite(norm)).float()
        nonfinite = torch.maximum(self.nonfinite_loss, bad_norm)
        skip = torch.maximum(nonfinite, self.force_skip)
        self.tally.record_update(nonfinite, norm)
        self.grad_norm.copy_(norm)
        self.skipped.copy_(skip)
        # Fused optimizers read ``found_inf`` (the attribute GradScaler sets) and skip the step
        # where it is non-zero. Set at every update: another ParameterUpdate may share the
        # optimizer.
        self.optimizer.found_inf = self.skipped  # type: ignore[attr-defined]
        self.optimizer.step()
        torch._foreach_zero_(self.grads)
        self.nonfinite_loss.zero_()

    def _sum_over_ranks(self) -> None:
        """Every rank's gradients summed, and :attr:`nonfinite_loss` set where any rank's was."""
        flag = self.flat_grads[0][-1]  # 0-d: how many ranks saw a non-finite loss
        flag.copy_(self.nonfinite_loss)
        all_reduce_(self.flat_grads, self.ranks)
        torch.clamp(flag, max=1.0, out=self.nonfinite_loss)

    @property
    def pending(self) -> bool:
        """Whether gradients of an accumulation window wait for their update (host side)."""
        return self._pending

    def record_micro_batch(self, update_applied: bool) -> None:
        """After a micro-batch's step ran (outside any graph): its gradients wait for an update
        unless ``update_applied``."""
        self._pending = not update_applied

    @contextmanager
    def forcing_skip(self) -> Iterator[None]:
        """Within: every :meth:`apply` skips (graph warm-up and capture run the real update,
        which must change nothing)."""
        self.force_skip.fill_(1.0)
        try:
            yield
        finally:
            self.force_skip.fill_(0.0)

    def snapshot(self) -> UpdateSnapshot:
        """What :meth:`restore` puts back: the tally, the noted non-finite loss and, while a
        window is :attr:`pending`, copies of the gradients (zeros otherwise)."""
        grads = [g.clone() for g in self.grads] if self.pending else None
        return UpdateSnapshot(grads, self.nonfinite_loss.clone(), self.tally.snapshot())

    def restore(self, snapshot: UpdateSnapshot) -> None:
        """Put gradients, non-finite flag and tally back as :meth:`snapshot` found them."""
        self.grad_norm.zero_()  # what warm-up left here is no update's outcome
        self.skipped.zero_()
        if snapshot.grads is None:
            torch._foreach_zero_(self.grads)
        else:
            torch._foreach_copy_(self.grads, snapshot.grads)
        self.nonfinite_loss.copy_(snapshot.nonfinite_loss)
        self.tally.restore(snapshot.tally)

    @property
    def made(self) -> bool:
        """Whether the last :meth:`apply` changed the parameters (a host synchronisation: for
        tests and tools; the training loop reads :attr:`tally` instead)."""
        return not bool(self.skipped)

    def _check_gradients_kept(self) -> None:
        for parameter, grad in zip(self.parameters, self.grads, strict=True):
            if parameter.grad is not grad:
                raise RuntimeError(
                    "a parameter's .grad was replaced (zero_grad(set_to_none=True)?); "
                    "ParameterUpdate owns the gradient tensors and zeroes them itself"
                )


def _flat_gradients(parameters: list[nn.Parameter]) -> list[torch.Tensor]:
    """Zeroed gradients for ``parameters``, made views of one flat buffer per (dtype, device)
    with one spare element at its end (the ranks' non-finite flag); a gradient already there
    is copied in. Returns the buffers."""
    groups: dict[tuple[torch.dtype, torch.device], list[nn.Parameter]] = {}
    for parameter in parameters:
        groups.setdefault((parameter.dtype, parameter.device), []).append(parameter)
    buffers = []
    for (dtype, device), members in groups.items():
        flat = torch.zeros(sum(p.numel() for p in members) + 1, dtype=dtype, device=device)
        offset = 0
        for parameter in members:
            view = flat[offset : offset + parameter.numel()].view_as(parameter)
            if parameter.grad is not None:
                view.copy_(parameter.grad)
            parameter.grad = view
            offset += parameter.numel()
        buffers.append(flat)
    return buffers
