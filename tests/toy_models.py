"""A tiny encoder-decoder built per (src_len, tgt_len) key, for testing BucketingModule."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nmtbucket import Batch, LengthPair


class ToyCore(nn.Module):
    """The shared parameters: embeddings, one attention projection, an output layer."""

    def __init__(self, vocab_size: int = 11, dim: int = 16, max_len: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.positions = nn.Embedding(max_len, dim)
        self.query = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, vocab_size)


class ToySeq2Seq(nn.Module):
    """One key's graph: position ids and causal mask are buffers specialised to the key."""

    def __init__(self, core: ToyCore, bucket_key: LengthPair) -> None:
        super().__init__()
        self.core = core
        src_len, tgt_len = bucket_key
        self.register_buffer("src_positions", torch.arange(src_len), persistent=False)
        self.register_buffer("tgt_positions", torch.arange(tgt_len), persistent=False)
        causal = torch.ones(tgt_len, tgt_len, dtype=torch.bool).tril()  # True = may attend
        self.register_buffer("causal", causal, persistent=False)
        self.register_buffer("mix", torch.tensor(0.5), persistent=False)  # float, per key

    def forward(self, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over real target tokens (padding masked out)."""
        assert batch.tgt is not None and batch.tgt_lengths is not None
        core = self.core
        memory = core.embed(batch.src) + core.positions(self.src_positions)  # (B, S, D)
        tgt = core.embed(batch.tgt) + core.positions(self.tgt_positions)  # (B, T, D)
        lengths = batch.src_lengths.clamp(min=1)  # filler rows attend to position 0
        src_ok = self.src_positions[None, :] < lengths[:, None]  # (B, S)
        context = F.scaled_dot_product_attention(
            core.query(tgt), memory, memory, attn_mask=src_ok[:, None, :]
        )  # (B, T, D)
        mixed = F.scaled_dot_product_attention(tgt, tgt, tgt, attn_mask=self.causal)  # (B, T, D)
        logits = core.out(context + self.mix * mixed)  # (B, T, V)
        real = self.tgt_positions[None, :] < batch.tgt_lengths[:, None]  # (B, T)
        targets = batch.tgt.masked_fill(~real, -100)
        loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="sum")
        return loss / real.sum().clamp(min=1)


def toy_sym_gen(core: ToyCore):
    """``sym_gen`` that wraps the same core for every key."""

    def sym_gen(bucket_key: LengthPair) -> ToySeq2Seq:
        return ToySeq2Seq(core, bucket_key)

    return sym_gen
