"""The language-model training step: forward from the carried (or a zero) state, masked
cross-entropy, backward; and the state carried to the next batch of the stream."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.models.lm import LMState
from nmtbucket.training.loss import masked_cross_entropy
from nmtbucket.training.step import NormalizedStep


@dataclass
class _StateSlot:
    """Fixed buffers for batches of one shape: the state a step starts from and the one it
    ends in, each (num_layers, B, d_model). A captured step reads and writes these same
    tensors on every replay."""

    start: LMState
    end: LMState


class LanguageModelStep(NormalizedStep):
    """One micro-batch through its bucket's language model (a
    :class:`~nmtbucket.training.step.TrainStep`).

    A batch that ``continues`` the previous one (stream mode) starts from the state the previous
    batch ended in, detached: truncated back-propagation through time. Any other batch (the
    first of an epoch, or a sentence-mode batch) starts from zeros. :meth:`prepare` makes that
    choice on the host, before the step, so the step itself is pure tensor work a CUDA graph can
    replay. The carried state is part of :meth:`state_dict`, so a run resumed mid-epoch
    continues exactly.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self._slots: dict[tuple[int, torch.device], _StateSlot] = {}
        self._carried_slot: tuple[int, torch.device] | None = None  # its end: the state to carry
        self._loaded: LMState | None = None  # a saved state to carry, not yet in a slot
        self._layers_and_width: tuple[int, int] | None = None  # learnt from the first state

    def prepare(self, batch: LMBatch) -> None:
        """Write the state ``batch`` starts from into its slot (made here once the state's size
        is known): the carried one when it continues, else zeros. Before the very first step
        the size is unknown; that step starts from zeros and makes its slot."""
        key = _slot_key(batch)
        source = self._loaded
        if source is None and self._carried_slot is not None:
            source = self._slots[self._carried_slot].end
        if not batch.continues:
            source = None
        slot = self._slots.get(key)
        if slot is None and source is not None:
            self._layers_and_width = (source[0].shape[0], source[0].shape[2])
        if slot is None and self._layers_and_width is not None:
            slot = self._new_slot(key)
        if slot is not None and source is None:
            torch._foreach_zero_(list(slot.start))
        elif slot is not None and source is not None:
            torch._foreach_copy_(list(slot.start), list(source))
        self._loaded = None
        self._carried_slot = key  # this batch's step writes the state to carry on

    def __call__(self, module: nn.Module, batch: LMBatch) -> torch.Tensor:
        slot = self._slots.get(_slot_key(batch))
        start = None if slot is None else slot.start  # None: zeros, made by the model
        logits, state = module(replace(batch, state=start))  # (B, T, V)
        if slot is None:  # the first batch of all (no graph is captured without a warm-up)
            self._layers_and_width = (state[0].shape[0], state[0].shape[2])
            slot = self._new_slot(_slot_key(batch))
        terms = masked_cross_entropy(logits, batch.targets, batch.mask, self.label_smoothing)
        (terms.loss_sum / self.normalizer_on(batch.inputs.device)).backward()
        slot.end[0].copy_(state[0].detach())
        slot.end[1].copy_(state[1].detach())
        return (terms.loss_sum / terms.num_tokens.clamp(min=1)).detach()

    def state_dict(self) -> dict[str, Any]:
        carried = self._loaded
        if carried is None and self._carried_slot in self._slots:
            carried = self._slots[self._carried_slot].end
        return {} if carried is None else {"hidden": carried[0], "cell": carried[1]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved state (copied into a slot by the next :meth:`prepare`)."""
        self._loaded = (state["hidden"], state["cell"]) if state else None
        self._carried_slot = None

    def discard_state_if(self, skipped: torch.Tensor) -> None:
        """After an update: where ``skipped`` (0-d, 1.0 when the update was skipped for a
        non-finite loss or gradient), zero the state to carry, so the next batch starts from
        zeros rather than from a state that may hold NaN or infinity. On the device: the
        training loop does not wait to learn whether the update was skipped."""
        if self._carried_slot is None:
            return
        flag = skipped.to(torch.bool)
        for tensor in self._slots[self._carried_slot].end:
            tensor.masked_fill_(flag, 0.0)

    def _new_slot(self, key: tuple[int, torch.device]) -> _StateSlot:
        assert self._layers_and_width is not None
        layers, width = self._layers_and_width
        rows, device = key
        zeros = [torch.zeros(layers, rows, width, device=device) for _ in range(4)]
        slot = _StateSlot(start=(zeros[0], zeros[1]), end=(zeros[2], zeros[3]))
        self._slots[key] = slot
        return slot


def _slot_key(batch: LMBatch) -> tuple[int, torch.device]:
    return batch.batch_size, batch.inputs.device
