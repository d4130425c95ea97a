"""An LSTM encoder-decoder with Luong attention (dot or general score, attentional hidden state,
optional input feeding).

Choices: padding never reaches a real position without packed sequences (which need lengths on
the host and so a device sync): the forward direction reads left to right, so trailing padding
comes after every real token, and the backward direction runs over each row with its real
tokens reversed in place. The two directions of every encoder layer are summed back to d_model.
The decoder starts from zero hidden and cell states (and a zero input feed); it learns what it
needs of the source through attention, which keeps the state free of per-row gathers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
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


def reversal_index(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """(B, S) int64 gather index reversing the first ``lengths[b]`` positions of each row and
    leaving the padding after them in place; applying it twice is the identity."""
    positions = torch.arange(length, device=lengths.device)[None, :]  # (1, S)
    flipped = lengths[:, None] - 1 - positions  # (B, S)
    return torch.where(positions < lengths[:, None], flipped, positions)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x`` (B, S, d) with row ``b`` reordered along S by ``index[b]`` (B, S)."""
    return x.gather(1, index[:, :, None].expand_as(x))


@dataclass
class LSTMDecoderState:
    """The recurrent state, whose shapes never depend on the step. The encoder outputs belong to
    the B sentences, the recurrent state to the R = k x B hypothesis rows (a sentence's k rows
    consecutive)."""

    memory: torch.Tensor  # (B, S, d_model) encoder outputs
    src_mask: torch.Tensor  # (B, S) bool
    hidden: torch.Tensor  # (N, R, d_model)
    cell: torch.Tensor  # (N, R, d_model)
    feed: torch.Tensor  # (R, d_model) the previous attentional state (zeros before step 0)


class LSTMEncoder(nn.Module):
    """Stacked one-layer LSTMs, each optionally bidirectional with its directions summed."""

    def __init__(self, d_model: int, num_layers: int, bidirectional: bool, dropout: float) -> None:
        super().__init__()
        self.forward_layers = nn.ModuleList(
            nn.LSTM(d_model, d_model, batch_first=True) for _ in range(num_layers)
        )
        self.backward_layers = nn.ModuleList(
            nn.LSTM(d_model, d_model, batch_first=True)
            for _ in range(num_layers if bidirectional else 0)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, src_lengths: torch.Tensor) -> torch.Tensor:
        """Outputs (B, S, d_model) for embedded inputs ``x`` (B, S, d_model)."""
        reverse = reversal_index(src_lengths, x.shape[1])  # (B, S)
        for i, forward_layer in enumerate(self.forward_layers):
            if i > 0:
                x = self.dropout(x)
            y, _ = forward_layer(x)  # (B, S, d_model)
            if len(self.backward_layers) > 0:
                backward, _ = self.backward_layers[i](gather_rows(x, reverse))
                y = y + gather_rows(backward, reverse)
            x = y
        return x


class LSTMSeq2Seq(Seq2Seq[LSTMDecoderState]):
    """Luong et al. (2015): score(h_t, h_s) = h_t . h_s (dot) or (W_a h_t) . h_s (general);
    attentional state h~_t = tanh(W_c [c_t; h_t]); logits = W_out h~_t."""

    def __init__(self, config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> None:
        super().__init__(src_vocab_size, tgt_vocab_size, config.d_model)
        d = config.d_model
        self.src_embed, self.tgt_embed = build_embeddings(
            src_vocab_size, tgt_vocab_size, d, config.share_embeddings
        )
        self.encoder = LSTMEncoder(
            d, config.encoder_layers, config.bidirectional_encoder, config.dropout
        )
        self.input_feeding = config.input_feeding
        self.decoder = nn.LSTM(
            2 * d if config.input_feeding else d,
            d,
            num_layers=config.decoder_layers,
            batch_first=True,
            dropout=config.dropout if config.decoder_layers > 1 else 0.0,
        )
        self.score: nn.Module = (
            nn.Linear(d, d, bias=False) if config.attention == "general" else nn.Identity()
        )
        self.attentional = nn.Linear(2 * d, d, bias=False)
        self.dropout = nn.Dropout(config.dropout)
        self.output = build_output_layer(self.tgt_embed, config.tie_output_embeddings)

    def encode(
        self, src: torch.Tensor, src_lengths: torch.Tensor, buffers: KeyBuffers | None = None
    ) -> EncoderState:
        x = self.dropout(self.src_embed(src))  # (B, S, d_model)
        memory = self.dropout(self.encoder(x, src_lengths))  # (B, S, d_model)
        return EncoderState(memory=memory, src_mask=source_mask(src_lengths, src.shape[1]))

    def decode(
        self, tgt_in: torch.Tensor, encoder_state: EncoderState, buffers: KeyBuffers | None = None
    ) -> torch.Tensor:
        x = self.dropout(self.tgt_embed(tgt_in))  # (B, T, d_model)
        state = self.init_decoder_state(encoder_state, tgt_in.shape[1])
        if not self.input_feeding:  # no recurrence through h~: run the LSTM over all of T at once
            h, _ = self.decoder(x, (state.hidden, state.cell))  # (B, T, d_model)
            return self.output(self._attend(h, state.memory, state.src_mask))  # (B, T, V)
        attentional = []
        for t in range(tgt_in.shape[1]):
            h_tilde, state = self._step(state, x[:, t : t + 1])  # (B, 1, d_model)
            attentional.append(h_tilde)
        return self.output(torch.cat(attentional, dim=1))  # (B, T, V)

    def init_decoder_state(
        self, encoder_state: EncoderState, max_output_len: int, static: bool = False
    ) -> LSTMDecoderState:
        memory = encoder_state.memory  # (B, S, d_model)
        zeros = memory.new_zeros(self.decoder.num_layers, memory.shape[0], self.d_model)
        return LSTMDecoderState(
            memory=memory,
            src_mask=encoder_state.src_mask,
            hidden=zeros,
            cell=zeros,
            feed=zeros[0],
        )

    def decode_step(
        self, state: LSTMDecoderState, prev_tokens: torch.Tensor, step: int | torch.Tensor
    ) -> tuple[torch.Tensor, LSTMDecoderState]:
        x = self.dropout(self.tgt_embed(prev_tokens[:, None]))  # (R, 1, d_model)
        h_tilde, state = self._step(state, x)
        return self.output(h_tilde)[:, 0], state  # (R, V)

    def reorder_state(
        self,
        state: LSTMDecoderState,
        indices: torch.Tensor,
        sentences: torch.Tensor | None = None,
    ) -> LSTMDecoderState:
        memory, src_mask = state.memory, state.src_mask
        if sentences is not None:
            memory, src_mask = (
                memory.index_select(0, sentences),
                src_mask.index_select(0, sentences),
            )
        return LSTMDecoderState(
            memory=memory,
            src_mask=src_mask,
            hidden=state.hidden.index_select(1, indices),
            cell=state.cell.index_select(1, indices),
            feed=state.feed.index_select(0, indices),
        )

    def _step(
        self, state: LSTMDecoderState, x: torch.Tensor
    ) -> tuple[torch.Tensor, LSTMDecoderState]:
        """One decoder position from embedded input ``x`` (R, 1, d_model): h~ (R, 1, d_model).
        In teacher forcing R = B; in search a sentence's k hypotheses attend to its source
        together."""
        if self.input_feeding:
            x = torch.cat([x, state.feed[:, None]], dim=-1)  # (B, 1, 2 d_model)
        h, (hidden, cell) = self.decoder(x, (state.hidden, state.cell))  # (R, 1, d_model)
        sentences = state.memory.shape[0]
        grouped = h.view(sentences, -1, h.shape[-1])  # (B, k, d_model): a sentence's rows
        h_tilde = self._attend(grouped, state.memory, state.src_mask).view_as(h)  # (R, 1, d)
        return h_tilde, replace(state, hidden=hidden, cell=cell, feed=h_tilde[:, 0])

    def _attend(
        self, h: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> torch.Tensor:
        """Attentional states h~ (B, T, d_model), dropped out, for decoder outputs ``h``."""
        scores = self.score(h) @ memory.transpose(1, 2)  # (B, T, S)
        scores = scores.masked_fill(~src_mask[:, None, :], float("-inf"))
        context = scores.softmax(dim=-1) @ memory  # (B, T, d_model)
        return self.dropout(torch.tanh(self.attentional(torch.cat([context, h], dim=-1))))
