"""The encoder-decoder interface every architecture implements (teacher-forced and incremental
decoding), and the per-bucket-key module that ``sym_gen`` wraps around one shared core."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import torch
from torch import nn

from nmtbucket.bucketing.keys import LengthPair
from nmtbucket.constants import BOS_ID, PAD_ID
from nmtbucket.data.batch import Batch
from nmtbucket.errors import NmtBucketError

StateT = TypeVar("StateT")

KeyBuffers = Mapping[str, torch.Tensor]
"""Constant tensors specialised to one bucket key (masks, position tables), by name."""


@dataclass
class EncoderState:
    """What the decoder attends to. Filler rows (length 0) may attend to their first position
    only, so that no attention row is fully masked (which would give NaN)."""

    memory: torch.Tensor  # (B, S, d_model)
    src_mask: torch.Tensor  # (B, S) bool, True where the decoder may attend


class StepDecoder(Protocol[StateT]):
    """What a search needs of a model: a :class:`Seq2Seq` itself, or a wrapper that runs its
    steps another way (replayed from CUDA graphs, :mod:`nmtbucket.search.captured`). The
    methods mean what :class:`Seq2Seq`'s do."""

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderState: ...

    def init_decoder_state(
        self, encoder_state: EncoderState, max_output_len: int, static: bool = False
    ) -> StateT: ...

    def decode_step(
        self, state: StateT, prev_tokens: torch.Tensor, step: int | torch.Tensor
    ) -> tuple[torch.Tensor, StateT]: ...

    def reorder_state(
        self, state: StateT, indices: torch.Tensor, sentences: torch.Tensor | None = None
    ) -> StateT: ...


class Seq2Seq(nn.Module, ABC, Generic[StateT]):
    """The shared layers of an encoder-decoder, independent of any bucket key.

    Teacher forcing: ``decode(tgt_in, encode(src, src_lengths))`` gives logits for every target
    position. Incremental decoding: ``init_decoder_state`` starts a state for the B sentences of
    an encoded batch, one row each, and each ``decode_step`` consumes the previous token of
    every row. Rows are hypotheses, grouped by sentence: R = k x B rows, the k of sentence b at
    ``b*k .. b*k + k - 1``, so what depends only on the source (encoder outputs, their
    attention keys and values) is kept once per sentence and never copied per hypothesis.
    ``reorder_state`` selects rows (beam search) and drops finished sentences.

    A state is either growing (its caches hold the steps taken so far, so nothing is computed
    or copied for steps not yet taken: the CPU's choice) or *static* (allocated for
    ``max_output_len`` steps with shapes that never change with the step, so that one step can
    be captured once as a CUDA graph and replayed).
    """

    src_embed: nn.Embedding
    tgt_embed: nn.Embedding  # the same module as src_embed with model.share_embeddings
    output: nn.Linear  # weight is tgt_embed.weight with model.tie_output_embeddings

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int) -> None:
        super().__init__()
        self.src_vocab_size = src_vocab_size
        self.tgt_vocab_size = tgt_vocab_size
        self.d_model = d_model

    def key_buffers(self, src_len: int, tgt_len: int) -> dict[str, torch.Tensor]:
        """Constant tensors to precompute once per key and pass to ``encode``/``decode`` as
        ``buffers``; without them the core computes what it needs on the fly. None by default."""
        return {}

    @abstractmethod
    def encode(
        self, src: torch.Tensor, src_lengths: torch.Tensor, buffers: KeyBuffers | None = None
    ) -> EncoderState:
        """Encode ``src`` (B, S) int64 whose rows hold ``src_lengths`` (B,) real tokens."""

    @abstractmethod
    def decode(
        self, tgt_in: torch.Tensor, encoder_state: EncoderState, buffers: KeyBuffers | None = None
    ) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V) for decoder inputs ``tgt_in`` (B, T) int64."""

    @abstractmethod
    def init_decoder_state(
        self, encoder_state: EncoderState, max_output_len: int, static: bool = False
    ) -> StateT:
        """A decoder state for up to ``max_output_len`` steps, before the first step, with one
        row per sentence; ``static`` preallocates it for all of them (see the class)."""

    @abstractmethod
    def decode_step(
        self, state: StateT, prev_tokens: torch.Tensor, step: int | torch.Tensor
    ) -> tuple[torch.Tensor, StateT]:
        """One step: logits (R, V) for the token after ``prev_tokens`` (R,), and the new state.

        ``step`` counts from 0 (``prev_tokens`` is BOS at step 0). A static state also takes a
        0-d int64 tensor, which keeps the step out of Python so one captured step serves every
        position. The returned state may share storage with ``state`` (caches may be written in
        place): use only the returned one.
        """

    @abstractmethod
    def reorder_state(
        self, state: StateT, indices: torch.Tensor, sentences: torch.Tensor | None = None
    ) -> StateT:
        """The state whose row ``i`` is row ``indices[i]`` (int64, (R',)) of ``state``, grouped by
        sentence as the class says. ``sentences`` (int64, (B',)), when given, are the
        sentences that remain (the others are finished); ``indices`` must then pick rows of
        those sentences only, in the same order. The returned state may reuse the storage of
        ``state`` (a cache gathered into a spare buffer): use only the returned one."""

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        buffers: KeyBuffers | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits (B, T, V)."""
        return self.decode(tgt_in, self.encode(src, src_lengths, buffers), buffers)


class KeyedSeq2Seq(nn.Module):
    """One bucket key's module: the shared ``core`` plus key-specialised buffers.

    The buffers are non-persistent, so ``state_dict()`` is the core's alone and identical for
    every key; ``core`` is registered as a submodule, so parameter names are too.
    """

    core: Seq2Seq[Any]

    def __init__(self, core: Seq2Seq[Any], bucket_key: LengthPair) -> None:
        super().__init__()
        self.core = core
        self.bucket_key = LengthPair(*bucket_key)
        buffers = core.key_buffers(self.bucket_key.src_len, self.bucket_key.tgt_len)
        for name, tensor in buffers.items():
            self.register_buffer(name, tensor, persistent=False)
        self._buffer_names = tuple(buffers)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Teacher-forced logits (B, T, tgt_vocab) for the batch's targets."""
        if tuple(batch.shape[1:]) != tuple(self.bucket_key):
            raise NmtBucketError(
                f"a batch of shape {batch.shape} reached the module of key {self.bucket_key}; "
                "pad batches to exactly their bucket key (see nmtbucket.data.collate)"
            )
        buffers = {name: getattr(self, name) for name in self._buffer_names}
        tgt_in = teacher_forcing_input(batch.tgt)  # (B, T)
        return self.core(batch.src, batch.src_lengths, tgt_in, buffers)  # (B, T, V)


def teacher_forcing_input(tgt: torch.Tensor, bos_id: int = BOS_ID) -> torch.Tensor:
    """Decoder inputs for labels ``tgt`` (B, T): BOS, then the labels shifted right by one."""
    bos = torch.full_like(tgt[:, :1], bos_id)  # (B, 1)
    return torch.cat([bos, tgt[:, :-1]], dim=1)  # (B, T)


def source_mask(src_lengths: torch.Tensor, src_len: int) -> torch.Tensor:
    """(B, S) bool, True at real positions; a filler row (length 0) keeps its first position so
    that attention over it stays finite."""
    positions = torch.arange(src_len, device=src_lengths.device)  # (S,)
    return positions[None, :] < src_lengths.clamp(min=1)[:, None]  # (B, S)


def build_embeddings(
    src_vocab_size: int, tgt_vocab_size: int, d_model: int, share: bool
) -> tuple[nn.Embedding, nn.Embedding]:
    """Source and target embeddings (the same module when ``share``), initialised
    normal(0, d_model**-0.5) with a zero padding row."""

    def build(vocab_size: int) -> nn.Embedding:
        embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        nn.init.normal_(embedding.weight, mean=0.0, std=d_model**-0.5)
        with torch.no_grad():
            embedding.weight[PAD_ID].zero_()
        return embedding

    src_embed = build(src_vocab_size)
    return src_embed, src_embed if share else build(tgt_vocab_size)


def build_output_layer(tgt_embed: nn.Embedding, tie: bool) -> nn.Linear:
    """The projection from d_model to target logits, bias-free; with ``tie`` its weight *is*
    the target embedding matrix."""
    vocab_size, d_model = tgt_embed.weight.shape
    output = nn.Linear(d_model, vocab_size, bias=False)
    if tie:
        output.weight = tgt_embed.weight
    return output
