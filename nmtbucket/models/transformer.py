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
    rows are consecutive (R = k x B rows for B sentences)."""

    self_kv: list[torch.Tensor]  # per layer (2, R, H, T, d_head): T = steps so far (growing),
    # or L = max_output_len preallocated (static), zeros after the steps taken
    cross_kv: torch.Tensor  # (N, 2, B, H, S, d_head) encoder keys/values, computed once
    src_mask: torch.Tensor  # (B, 1, 1, S) bool
    positions: torch.Tensor  # (L, d_model) position table, shared by all rows
    static: bool  # every step has the same shapes: a preallocated cache read through a mask


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

    def forward(self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Queries from ``x`` (B, Lq, d_model) over ``kv`` (2, B, H, Lk, d_head); ``mask`` (bool,
        True = attend) broadcasts to (B, H, Lq, Lk)."""
        batch, length, d_model = x.shape
        q = self.query(x).view(batch, length, self.num_heads, -1).transpose(1, 2)  # (B, H, Lq, dh)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask, dropout_p=dropout)
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
        slot: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One position ``x`` (R, 1, d_model) of R = k x B hypothesis rows, a sentence's k rows
        consecutive; returns the layer's output (R, 1, d_model) and its self-attention cache.

        ``slot`` None: the cache ``self_kv`` (2, R, H, T, d_head) holds the T steps so far; the
        new keys/values are appended and attention reads all of them. ``slot`` (1,) int64: the
        cache is preallocated (2, R, H, L, d_head); they are written at ``slot`` in place and
        attention masks the slots after it, so the shapes never change. The k rows of a
        sentence query its encoder keys/values ``cross_kv`` (2, B, H, S, d_head) together."""
        h = self.self_norm(x)
        new_kv = self.self_attn.keys_values(h)  # (2, R, H, 1, d_head)
        if slot is None:
            self_kv = torch.cat([self_kv, new_kv], dim=3)  # (2, R, H, T + 1, d_head)
            mask = None
        else:
            self_kv.index_copy_(3, slot, new_kv)
            slots = torch.arange(self_kv.shape[3], device=slot.device)  # (L,)
            mask = (slots <= slot)[None, :]  # (1, L)
        x = x + self.dropout(self.self_attn(h, self_kv, mask))
        sentences = cross_kv.shape[1]
        grouped = x.view(sentences, -1, x.shape[-1])  # (B, k, d_model)
        return self._cross_and_ff(grouped, cross_kv, src_mask).view_as(x), self_kv

    def _cross_and_ff(
        self, x: torch.Tensor, cross_kv: torch.Tensor, src_mask: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.dropout(self.cross_attn(self.cross_norm(x), cross_kv, src_mask))
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
        steps = max_output_len if static else 0
        return TransformerDecoderState(
            self_kv=[memory.new_zeros(2, batch, heads, steps, d_head) for _ in range(num_layers)],
            cross_kv=cross_kv,
            src_mask=encoder_state.src_mask[:, None, None, :],
            positions=sinusoid_table(max_output_len, self.d_model, memory.device).to(memory.dtype),
            static=static,
        )

    def decode_step(
        self, state: TransformerDecoderState, prev_tokens: torch.Tensor, step: int | torch.Tensor
    ) -> tuple[torch.Tensor, TransformerDecoderState]:
        slot = None  # the growing cache appends
        if state.static:
            slot = torch.as_tensor(step, device=prev_tokens.device).reshape(1)  # (1,)
            position = state.positions.index_select(0, slot)  # (1, d_model)
        else:
            position = state.positions[int(step)][None]  # (1, d_model)
        x = self.tgt_embed(prev_tokens[:, None]) * self.embed_scale + position  # (R, 1, d_model)
        x = self.dropout(x)
        self_kv = []
        for layer, layer_kv, cross_kv in zip(
            self._decoder_stack(), state.self_kv, state.cross_kv, strict=True
        ):
            x, layer_kv = layer.step(x, layer_kv, cross_kv, state.src_mask, slot)
            self_kv.append(layer_kv)
        logits = self.output(self.decoder_norm(x))[:, 0]  # (R, V)
        return logits, replace(state, self_kv=self_kv)

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
        return replace(
            state,
            self_kv=[kv.index_select(1, indices) for kv in state.self_kv],
            cross_kv=cross_kv,
            src_mask=src_mask,
        )

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
