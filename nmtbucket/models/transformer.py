"""A pre-norm Transformer encoder-decoder with sinusoidal positions and a key/value cache for
incremental decoding: growing with the steps, or preallocated for static shapes."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from nmtbucket.config import ModelConfig
from nmtbucket.models.base import (
    EncoderState,
    KeyBuffers,
    Seq2Seq,
    build_embeddings,
    build_output_layer,
    source_mask,
)


def sinusoid_table(length: int, d_model: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, d_model) float32 positions of Vaswani et al.: sin at even dims, cos at odd."""
    positions = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # (L, 1)
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
        * (-math.log(10000.0) / d_model)
    )  # (d_model / 2,)
    table = torch.zeros(length, d_model, device=device)
    table[:, 0::2] = torch.sin(positions * inv_freq)
    table[:, 1::2] = torch.cos(positions * inv_freq)
    return table


def causal_mask(length: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) bool, True where query position i may attend to key position j <= i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


@dataclass
class TransformerDecoderState:
    """The incremental state. Self-attention keys/values belong to hypothesis rows; the encoder's
    keys/values and mask belong to sentences and are shared by a sentence's hypotheses, whose
    rows are consecutive (R = k x B rows for B sentences).

    The self-attention cache is allocated for all L steps. A growing state fills its first
    ``steps`` slots, attends to those only and reorders only those, gathering them into
    ``spare``, a second buffer, which then becomes the cache (the old cache becomes the spare),
    so no step allocates or copies more than the steps taken. A static state attends to every
    slot through a mask and reorders all of them, so its shapes never change."""

    self_kv: torch.Tensor  # (N, 2, R, H, L, d_head) keys/values per layer; growing: slots past
    # ``steps`` unused; static: zeros past the step
    steps: int  # growing: slots filled so far
    spare: torch.Tensor | None  # growing: (N, 2, >= R', H, L, d_head) the next reorder's target
    cross_kv: torch.Tensor  # (N, 2, B, H, S, d_head) encoder keys/values, computed once
    src_mask: torch.Tensor  # (B, 1, 1, S) bool
    positions: torch.Tensor  # (L, d_model) position table, shared by all rows
    static: bool  # every step has the same shapes


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention; keys/values are projected separately so they can be cached."""

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def keys_values(self, x: torch.Tensor) -> torch.Tensor:
        """(2, B, H, L, d_head) keys and values of ``x`` (B, L, d_model)."""
        batch, length, d_model = x.shape
        kv = self.key_value(x).view(batch, length, 2, self.num_heads, d_model // self.num_heads)
        return kv.permute(2, 0, 3, 1, 4)  # (2, B, H, L, d_head)

    def forward(
        self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None, fused: bool = True
    ) -> torch.Tensor:
        """Queries from ``x`` (B, Lq, d_model) over ``kv`` (2, B, H, Lk, d_head); ``mask`` (bool,
        True = attend) broadcasts to (B, H, Lq, Lk). ``fused`` uses PyTorch's fused kernel;
        otherwise plain matrix products (no dropout), which a decoding step on the CPU, with
        its one query per row, runs about twice as fast."""
        batch, length, d_model = x.shape
        q = self.query(x).view(batch, length, self.num_heads, -1).transpose(1, 2)  # (B, H, Lq, dh)
        if fused:
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, dropout_p=dropout)
        else:
            scores = q @ kv[0].transpose(-1, -2) * q.shape[-1] ** -0.5  # (B, H, Lq, Lk)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            y = scores.softmax(dim=-1) @ kv[1]  # (B, H, Lq, dh)
        return self.out(y.transpose(1, 2).reshape(batch, length, d_model))  # (B, Lq, d_model)


class FeedForward(nn.Sequential):
    """Position-wise two-layer ReLU network."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )


class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each a pre-norm residual block."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_model
        self.attn_norm = nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, config.num_heads, config.attention_dropout)
        self.ff_norm = nn.LayerNorm(d)
        self.ff = FeedForward(d, config.d_ff, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)  # (B, S, d_model)
        x = x + self.dropout(self.attn(h, self.attn.keys_values(h), mask))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, attention over the encoder, feed-forward: pre-norm residuals."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_model
        self.self_norm = nn.LayerNorm(d)
        self.self_attn = MultiHeadAttention(d, config.num_heads, config.attention_dropout)
        self.cross_norm = nn.LayerNorm(d)
        self.cross_attn = MultiHeadAttention(d, config.num_heads, config.attention_dropout)
        self.ff_norm = nn.LayerNorm(d)
        self.ff = FeedForward(d, config.d_ff, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, causal: torch.Tensor, cross_kv: torch.Tensor, src_mask: torch.Tensor
    ) -> torch.Tensor:
        """Teacher forcing over all T positions of ``x`` (B, T, d_model)."""
        h = self.self_norm(x)
        x = x + self.dropout(self.self_attn(h, self.self_attn.keys_values(h), causal))
        return self._cross_and_ff(x, cross_kv, src_mask)

    def step(
        self,
        x: torch.Tensor,
        self_kv: torch.Tensor,
        cross_kv: torch.Tensor,
        src_mask: torch.Tensor,
        slot: int | torch.Tensor,
    ) -> torch.Tensor:
        """One position ``x`` (R, 1, d_model) of R = k x B hypothesis rows, a sentence's k rows
        consecutive: the layer's output (R, 1, d_model).

        Its keys/values are written into the cache ``self_kv`` (2, R, H, L, d_head) at ``slot``.
        An int ``slot`` (a growing state): attention reads slots 0 .. ``slot`` only. A (1,)
        int64 tensor (a static state): attention reads every slot and masks those after it,
        so the shapes never change. The k rows of a sentence query its encoder keys/values
        ``cross_kv`` (2, B, H, S, d_head) together."""
        h = self.self_norm(x)
        new_kv = self.self_attn.keys_values(h)  # (2, R, H, 1, d_head)
        if isinstance(slot, int):
            self_kv[:, :, :, slot] = new_kv[:, :, :, 0]
            visible, mask = self_kv[:, :, :, : slot + 1], None  # (2, R, H, slot + 1, d_head)
        else:
            self_kv.index_copy_(3, slot, new_kv)
            slots = torch.arange(self_kv.shape[3], device=slot.device)  # (L,)
            visible, mask = self_kv, (slots <= slot)[None, :]  # (1, L)
        fused = x.device.type != "cpu"
        x = x + self.dropout(self.self_attn(h, visible, mask, fused))
        sentences = cross_kv.shape[1]
        grouped = x.view(sentences, -1, x.shape[-1])  # (B, k, d_model)
        return self._cross_and_ff(grouped, cross_kv, src_mask, fused).view_as(x)

    def _cross_and_ff(
        self, x: torch.Tensor, cross_kv: torch.Tensor, src_mask: torch.Tensor, fused: bool = True
    ) -> torch.Tensor:
        x = x + self.dropout(self.cross_attn(self.cross_norm(x), cross_kv, src_mask, fused))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class Transformer(Seq2Seq[TransformerDecoderState]):
    """Pre-norm encoder-decoder (LayerNorm before each block, a final LayerNorm per stack)."""

    def __init__(self, config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> None:
        super().__init__(src_vocab_size, tgt_vocab_size, config.d_model)
        self.embed_scale = math.sqrt(config.d_model)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(config) for _ in range(config.encoder_layers)
        )
        self.encoder_norm = nn.LayerNorm(config.d_model)
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(config) for _ in range(config.decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.src_embed, self.tgt_embed = build_embeddings(
            src_vocab_size, tgt_vocab_size, config.d_model, config.share_embeddings
        )
        self.output = build_output_layer(self.tgt_embed, config.tie_output_embeddings)
        if not config.tie_output_embeddings:
            nn.init.xavier_uniform_(self.output.weight)

    def key_buffers(self, src_len: int, tgt_len: int) -> dict[str, torch.Tensor]:
        return {
            "positions": sinusoid_table(max(src_len, tgt_len), self.d_model),  # (max(S, T), d)
            "causal_mask": causal_mask(tgt_len),  # (T, T)
        }

    def encode(
        self, src: torch.Tensor, src_lengths: torch.Tensor, buffers: KeyBuffers | None = None
    ) -> EncoderState:
        src_len = src.shape[1]
        positions = self._positions(src_len, src.device, buffers)  # (S, d_model)
        x = self.dropout(self.src_embed(src) * self.embed_scale + positions)  # (B, S, d_model)
        mask = source_mask(src_lengths, src_len)  # (B, S)
        for layer in self.encoder_layers:
            x = layer(x, mask[:, None, None, :])
        return EncoderState(memory=self.encoder_norm(x), src_mask=mask)

    def decode(
        self, tgt_in: torch.Tensor, encoder_state: EncoderState, buffers: KeyBuffers | None = None
    ) -> torch.Tensor:
        tgt_len = tgt_in.shape[1]
        positions = self._positions(tgt_len, tgt_in.device, buffers)  # (T, d_model)
        x = self.dropout(self.tgt_embed(tgt_in) * self.embed_scale + positions)  # (B, T, d_model)
        causal = causal_mask(tgt_len, tgt_in.device) if buffers is None else buffers["causal_mask"]
        src_mask = encoder_state.src_mask[:, None, None, :]  # (B, 1, 1, S)
        for layer in self._decoder_stack():
            cross_kv = layer.cross_attn.keys_values(encoder_state.memory)  # (2, B, H, S, dh)
            x = layer(x, causal, cross_kv, src_mask)
        return self.output(self.decoder_norm(x))  # (B, T, V)

    def init_decoder_state(
        self, encoder_state: EncoderState, max_output_len: int, static: bool = False
    ) -> TransformerDecoderState:
        memory = encoder_state.memory  # (B, S, d_model)
        cross_kv = torch.stack(
            [layer.cross_attn.keys_values(memory) for layer in self._decoder_stack()]
        )  # (N, 2, B, H, S, dh)
        num_layers, _, batch, heads, _, d_head = cross_kv.shape
        shape = (num_layers, 2, batch, heads, max_output_len, d_head)
        return TransformerDecoderState(
            # a growing state never reads a slot before writing it
            self_kv=memory.new_zeros(shape) if static else memory.new_empty(shape),
            steps=0,
            spare=None,
            cross_kv=cross_kv,
            src_mask=encoder_state.src_mask[:, None, None, :],
            positions=sinusoid_table(max_output_len, self.d_model, memory.device).to(memory.dtype),
            static=static,
        )

    def decode_step(
        self, state: TransformerDecoderState, prev_tokens: torch.Tensor, step: int | torch.Tensor
    ) -> tuple[torch.Tensor, TransformerDecoderState]:
        slot: int | torch.Tensor
        if state.static:
            slot = torch.as_tensor(step, device=prev_tokens.device).reshape(1)  # (1,)
            position = state.positions.index_select(0, slot)  # (1, d_model)
        else:
            slot = int(step)
            position = state.positions[slot][None]  # (1, d_model)
            state = replace(state, steps=slot + 1)
        x = self.tgt_embed(prev_tokens[:, None]) * self.embed_scale + position  # (R, 1, d_model)
        x = self.dropout(x)
        for i, layer in enumerate(self._decoder_stack()):
            x = layer.step(x, state.self_kv[i], state.cross_kv[i], state.src_mask, slot)
        return self.output(self.decoder_norm(x))[:, 0], state  # (R, V)

    def reorder_state(
        self,
        state: TransformerDecoderState,
        indices: torch.Tensor,
        sentences: torch.Tensor | None = None,
    ) -> TransformerDecoderState:
        if sentences is None:
            cross_kv, src_mask = state.cross_kv, state.src_mask
        else:
            cross_kv = state.cross_kv.index_select(2, sentences)
            src_mask = state.src_mask.index_select(0, sentences)
        if state.static:
            self_kv, spare = state.self_kv.index_select(2, indices), None
        else:
            self_kv, spare = self._gather_steps(state, indices), state.self_kv
        return replace(state, self_kv=self_kv, spare=spare, cross_kv=cross_kv, src_mask=src_mask)

    @staticmethod
    def _gather_steps(state: TransformerDecoderState, indices: torch.Tensor) -> torch.Tensor:
        """(N, 2, R', H, L, d_head) the filled slots of rows ``indices`` (R',) of a growing
        state's cache, gathered into its spare buffer (allocated when too small)."""
        rows = len(indices)
        spare = state.spare
        if spare is None or spare.shape[2] < rows:
            shape = list(state.self_kv.shape)
            spare = state.self_kv.new_empty([*shape[:2], rows, *shape[3:]])
        target = spare[:, :, :rows]  # (N, 2, R', H, L, d_head)
        filled = state.steps
        torch.index_select(
            state.self_kv[:, :, :, :, :filled], 2, indices, out=target[:, :, :, :, :filled]
        )
        return target

    def _decoder_stack(self) -> list[DecoderLayer]:
        """The decoder layers, typed (ModuleList iterates as plain Modules)."""
        return cast(list[DecoderLayer], list(self.decoder_layers))

    def _positions(
        self, length: int, device: torch.device, buffers: KeyBuffers | None
    ) -> torch.Tensor:
        """The first ``length`` rows of the key's position table, or a fresh table."""
        if buffers is None:
            table = sinusoid_table(length, self.d_model, device)
        else:
            table = buffers["positions"][:length]
        return table.to(self.src_embed.weight.dtype)  # (length, d_model)
