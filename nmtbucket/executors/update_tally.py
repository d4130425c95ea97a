"""What the parameter updates did since the training loop last looked, counted on the device.

Reading a device value on the host (``float(loss)``, ``bool(skipped)``) makes the CPU wait
until the GPU has finished everything queued before it, so the CPU cannot prepare the next
batches while the GPU computes: the overlap that replaying CUDA graphs exists for is lost. The
update therefore keeps its outcomes in one small device tensor, changed only by tensor
operations inside :meth:`~nmtbucket.executors.update.ParameterUpdate.apply` (captured with it
under ``executor=cuda_graph``), and the loop copies it to the host with :meth:`UpdateTally.read`
once per log interval instead of once per micro-batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Slots of the tally's buffer: the window in progress, then the counts since the last read.
_WINDOW_LOSS = 0  # the window's micro-batch losses so far, summed
_WINDOW_BATCHES = 1  # and how many there were
_MADE = 2  # updates applied
_SKIPPED = 3  # updates skipped: a non-finite loss or gradient
_LOSS_SUM = 4  # each applied update's mean micro-batch loss, summed
_IN_ROW = 5  # skipped updates in a row up to the newest update (0: it was applied)
_LONGEST = 6  # the longest run of skipped updates seen since the last read
_MAX_NORM = 7  # the largest gradient norm (before clipping) since the last read
_SLOTS = 8


@dataclass(frozen=True)
class TallyReading:
    """The host's copy of an :class:`UpdateTally`: the updates since the previous read."""

    made: int
    skipped: int
    loss_sum: float  # the made updates' mean micro-batch losses, summed
    skipped_in_row: int  # up to the newest update, runs before the previous read included
    longest_skipped_run: int  # the longest run that reached into this interval
    max_grad_norm: float  # before clipping; NaN or infinite where a gradient was

    @property
    def mean_loss(self) -> float:
        """The mean loss of the updates made (NaN when none was)."""
        return self.loss_sum / self.made if self.made else math.nan


class UpdateTally:
    """Device-side counts of updates and their losses (float64: exact counts, exact sums).

    :meth:`note_loss` runs on every micro-batch and :meth:`record_update` in every update, both
    as tensor operations only; :meth:`read` is the one host synchronisation, and starts a new
    interval. A graph executor's warm-up runs the real update, so it puts the tally back
    afterwards with :meth:`snapshot` and :meth:`restore`."""

    def __init__(self, device: torch.device) -> None:
        self.values = torch.zeros(_SLOTS, dtype=torch.float64, device=device)

    def note_loss(self, loss: torch.Tensor) -> None:
        """Add a micro-batch's loss (0-d) to the window in progress."""
        self.values[_WINDOW_LOSS].add_(loss.detach().to(torch.float64))
        self.values[_WINDOW_BATCHES].add_(1.0)

    def record_update(self, nonfinite: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Count the update that ends the window: skipped where ``nonfinite`` (0-d, 1.0 when a
        loss or the gradient was NaN or infinite), else applied with the window's mean loss;
        keep the largest ``grad_norm`` (0-d, before clipping)."""
        v = self.values
        bad = nonfinite.to(torch.float64)
        mean = v[_WINDOW_LOSS] / v[_WINDOW_BATCHES].clamp(min=1.0)
        v[_MADE].add_(1.0 - bad)
        v[_SKIPPED].add_(bad)
        v[_LOSS_SUM].add_(torch.where(bad > 0, 0.0, mean))  # a skipped window's mean may be NaN
        v[_IN_ROW].add_(1.0).mul_(bad)
        torch.maximum(v[_LONGEST], v[_IN_ROW], out=v[_LONGEST])
        torch.maximum(v[_MAX_NORM], grad_norm.to(torch.float64), out=v[_MAX_NORM])  # NaN wins
        v[_WINDOW_LOSS : _WINDOW_BATCHES + 1].zero_()

    def read(self) -> TallyReading:
        """Copy the counts to the host (waiting for the device) and start a new interval."""
        made, skipped, loss_sum, in_row, longest, max_norm = self.values[_MADE:].tolist()
        self.values[_MADE : _LOSS_SUM + 1].zero_()
        self.values[_LONGEST].copy_(self.values[_IN_ROW])
        self.values[_MAX_NORM].zero_()
        return TallyReading(
            round(made), round(skipped), loss_sum, round(in_row), round(longest), max_norm
        )

    def continue_run(self, skipped_in_row: int) -> None:
        """After a resume: the run of skipped updates the saved state ended with."""
        self.values[_IN_ROW].fill_(float(skipped_in_row))
        self.values[_LONGEST].fill_(float(skipped_in_row))

    def snapshot(self) -> torch.Tensor:
        return self.values.clone()

    def restore(self, snapshot: torch.Tensor) -> None:
        self.values.copy_(snapshot)
