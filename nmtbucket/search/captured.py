"""Decoder steps replayed from CUDA graphs, for the search whose batch shrinks (:mod:`.beam`).

A graph needs static shapes, a search whose batch shrinks changes them. The two meet in
buckets: a step's shapes are fixed by its *graph key*, (source length S, sentence slots,
hypotheses per sentence k, output length L). S is the source bucket and L its output limit
(both fixed per decoding batch by :mod:`.decoding`); the live sentences are padded up to a
power of two of slots, and k is 1 at step 0, then the beam size. Each key's step is captured
once, on first use, into one memory pool shared by every key, as vLLM and SGLang capture one
graph per batch size; a decoding batch starts at its largest slot count and moves to smaller
keys as sentences finish, so the largest graphs of a batch are captured first.

:class:`CapturedDecoder` offers the decoding side of a :class:`~nmtbucket.models.base.Seq2Seq`
(``encode``, ``init_decoder_state``, ``decode_step``, ``reorder_state``), so the search runs
unchanged on it. Its state is the core's *static* state held in the key's buffers, live rows
first, filler rows (copies of live ones, so every value stays finite) after; a reorder gathers
outside the graph and copies the result into the buffers of the key it lands in.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from nmtbucket.constants import PAD_ID
from nmtbucket.executors.cuda_graph import Capture, capture_cuda_graph
from nmtbucket.models.base import EncoderState, Seq2Seq

log = logging.getLogger(__name__)

GraphKey = tuple[int, int, int, int]
"""(source length S, sentence slots, hypotheses per sentence k, output length L)."""


def sentence_slots(sentences: int) -> int:
    """The slots a batch of ``sentences`` live sentences is padded to: a power of two."""
    return 1 << max(sentences - 1, 0).bit_length()


def state_tensors(state: Any) -> list[torch.Tensor]:
    """The tensors of a decoder state (a dataclass), in field order."""
    fields = (getattr(state, field.name) for field in dataclasses.fields(state))
    return [value for value in fields if isinstance(value, torch.Tensor)]


def copy_state(buffers: Any, values: Any) -> None:
    """Copy the tensors of state ``values`` into those of state ``buffers`` (same layout),
    skipping any that already are the buffer."""
    for buffer, value in zip(state_tensors(buffers), state_tensors(values), strict=True):
        if value is not buffer:
            buffer.copy_(value)


def pad_indices(indices: torch.Tensor, size: int) -> torch.Tensor:
    """``indices`` (n,) followed by copies of its first entry up to ``size``."""
    filler = indices[:1].expand(size - len(indices))
    return torch.cat([indices, filler])


@dataclass
class CapturedStep:
    """One graph key's static buffers and its captured decoder step."""

    key: GraphKey
    state: Any  # the core's static decoder state: the step reads and writes it in place
    prev_tokens: torch.Tensor  # (slots * k,) int64
    step: torch.Tensor  # () int64
    logits: torch.Tensor  # (slots * k, V) written by every replay
    replay: Callable[[], None]


@dataclass
class PaddedState:
    """A search's decoder state: the first ``sentences`` slots and ``rows`` rows of a graph
    key's buffers are live."""

    graph: CapturedStep
    sentences: int
    rows: int


class CapturedDecoder:
    """``core``'s decoding side with every decoder step replayed from a CUDA graph per
    :data:`GraphKey`. ``capture`` and ``new_pool`` are CUDA's; tests on the CPU pass the
    capture stand-in. Put ``core`` in eval mode first."""

    def __init__(
        self,
        core: Seq2Seq[Any],
        capture: Capture = capture_cuda_graph,
        new_pool: Callable[[], Any] = torch.cuda.graph_pool_handle,
        warmup_runs: int = 1,
    ) -> None:
        self.core = core
        self.capture = capture
        self.new_pool = new_pool
        self.warmup_runs = warmup_runs
        self.graphs: dict[GraphKey, CapturedStep] = {}
        self._pool: Any = None

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderState:
        return self.core.encode(src, src_lengths)

    def init_decoder_state(
        self, encoder_state: EncoderState, max_output_len: int, static: bool = True
    ) -> PaddedState:
        """The core's static state for the batch's sentences, one row each (``static`` is
        accepted for the interface: the state is always static)."""
        state = self.core.init_decoder_state(encoder_state, max_output_len, static=True)
        memory = encoder_state.memory  # (B, S, d_model)
        everyone = torch.arange(memory.shape[0], device=memory.device)
        return self._place(state, everyone, everyone, (memory.shape[1], max_output_len))

    def decode_step(
        self, state: PaddedState, prev_tokens: torch.Tensor, step: int | torch.Tensor
    ) -> tuple[torch.Tensor, PaddedState]:
        """The live rows' logits (R, V) from one replay of the key's graph."""
        graph = state.graph
        graph.prev_tokens[: state.rows].copy_(prev_tokens)
        graph.step.fill_(int(step))
        graph.replay()
        return graph.logits[: state.rows], state

    def reorder_state(
        self, state: PaddedState, indices: torch.Tensor, sentences: torch.Tensor | None = None
    ) -> PaddedState:
        """Rows ``indices`` of the live rows (and only ``sentences``, when given), moved into
        the buffers of the key they now fit."""
        if sentences is None:
            sentences = torch.arange(state.sentences, device=indices.device)
        lengths = (state.graph.key[0], state.graph.key[3])
        return self._place(state.graph.state, indices, sentences, lengths)

    def _place(
        self,
        state: Any,
        indices: torch.Tensor,
        sentences: torch.Tensor,
        lengths: tuple[int, int],
    ) -> PaddedState:
        """Rows ``indices`` and sentences ``sentences`` of the static ``state`` with (source,
        output) ``lengths``, padded with copies to the slots of their key and copied into its
        buffers (captured on first use)."""
        live, rows = len(sentences), len(indices)
        slots = sentence_slots(live)
        per_sentence = rows // live
        padded_rows = pad_indices(indices, slots * per_sentence)
        placed = self.core.reorder_state(state, padded_rows, pad_indices(sentences, slots))
        key = (lengths[0], slots, per_sentence, lengths[1])
        graph = self.graphs.get(key)
        if graph is None:
            graph = self._capture(key, placed)
        else:
            for buffer, value in zip(
                state_tensors(graph.state), state_tensors(placed), strict=True
            ):
                buffer.copy_(value)
        return PaddedState(graph, live, rows)

    def _capture(self, key: GraphKey, state: Any) -> CapturedStep:
        """Static buffers for ``key`` holding ``state``, and its step captured."""
        if self._pool is None:
            self._pool = self.new_pool()
        slots, per_sentence = key[1], key[2]
        device = state_tensors(state)[0].device
        prev_tokens = torch.full((slots * per_sentence,), PAD_ID, device=device)
        step = torch.zeros((), dtype=torch.long, device=device)

        def run() -> torch.Tensor:
            logits, new_state = self.core.decode_step(state, prev_tokens, step)
            copy_state(state, new_state)  # a state computed anew (LSTM): into the buffers
            return logits

        snapshot = [tensor.clone() for tensor in state_tensors(state)]
        replay, logits = self.capture(run, self.warmup_runs, self._pool)
        for buffer, value in zip(state_tensors(state), snapshot, strict=True):
            buffer.copy_(value)  # warm-up and capture ran the step: undo it
        log.debug("captured the decoder step of key %s", key)
        graph = CapturedStep(key, state, prev_tokens, step, logits, replay)
        self.graphs[key] = graph
        return graph
