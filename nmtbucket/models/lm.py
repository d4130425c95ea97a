"""A word-level LSTM language model (Zaremba et al. 2014): embedding, stacked LSTM with dropout
on the non-recurrent connections, and a softmax layer (optionally tied to the embedding); and
the per-key module that ``sym_gen`` wraps around it, for 1-D length keys."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nmtbucket.config import ModelConfig
from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.errors import NmtBucketError

LMState = tuple[torch.Tensor, torch.Tensor]
"""Hidden and cell states, each (num_layers, B, d_model)."""


class LSTMLanguageModel(nn.Module):
    """The shared layers of every bucket key's graph; ``forward`` takes and returns the
    recurrent state, so truncated back-propagation can carry it from batch to batch."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_layers: int,
        dropout: float,
        tie_weights: bool = False,
        init_range: float = 0.1,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            d_model,
            d_model,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # between layers; self.dropout: ends
        )
        self.output = nn.Linear(d_model, vocab_size)
        for parameter in self.parameters():  # Zaremba et al.: uniform in [-r, r]
            nn.init.uniform_(parameter, -init_range, init_range)
        if tie_weights:
            self.output.weight = self.embed.weight

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> LMState:
        """Zeros, the state at the start of an epoch or of a sentence."""
        shape = (self.lstm.num_layers, batch_size, self.lstm.hidden_size)
        zeros = torch.zeros(shape, device=device or self.embed.weight.device)
        return zeros, zeros.clone()

    def forward(self, inputs: torch.Tensor, state: LMState) -> tuple[torch.Tensor, LMState]:
        """Logits (B, T, V) for the token after each of ``inputs`` (B, T), and the new state."""
        x = self.dropout(self.embed(inputs))  # (B, T, d_model)
        h, state = self.lstm(x, state)  # (B, T, d_model)
        return self.output(self.dropout(h)), state


class KeyedLanguageModel(nn.Module):
    """One bucket key's graph: the shared ``core`` run on batches of exactly ``bucket_key``
    positions. Its ``state_dict()`` is the core's, the same for every key."""

    def __init__(self, core: LSTMLanguageModel, bucket_key: int) -> None:
        super().__init__()
        self.core = core
        self.bucket_key = int(bucket_key)

    def forward(self, batch: LMBatch) -> tuple[torch.Tensor, LMState]:
        """Logits (B, T, V) and the state after the last position (stream mode carries it; in
        sentence mode rows end at different positions and it is not used)."""
        if batch.bucket_key != self.bucket_key:
            raise NmtBucketError(
                f"a batch of {batch.bucket_key} positions reached the module of key "
                f"{self.bucket_key}; pad batches to exactly their bucket key"
            )
        state = batch.state
        if state is None:
            state = self.core.initial_state(batch.inputs.shape[0])
        return self.core(batch.inputs, state)


def lm_sym_gen(core: LSTMLanguageModel) -> Callable[[int], KeyedLanguageModel]:
    """``sym_gen`` wrapping ``core`` for each length key: one parameter set for all keys."""

    def sym_gen(bucket_key: int) -> KeyedLanguageModel:
        return KeyedLanguageModel(core, bucket_key)

    return sym_gen


def build_language_model(config: ModelConfig, vocab_size: int) -> LSTMLanguageModel:
    """The shared layers of ``model.arch=lstm_lm``, after checking the ``model.*`` keys it
    reads (each error names the key)."""
    if config.arch != "lstm_lm":
        raise NmtBucketError(f"model.arch must be lstm_lm for a language model, got {config.arch}")
    for name in ("d_model", "layers"):
        if getattr(config, name) < 1:
            raise NmtBucketError(f"model.{name} must be at least 1, got {getattr(config, name)}")
    if not 0.0 <= config.dropout < 1.0:
        raise NmtBucketError(f"model.dropout must be in [0, 1), got {config.dropout}")
    if config.init_range <= 0:
        raise NmtBucketError(f"model.init_range must be positive, got {config.init_range}")
    return LSTMLanguageModel(
        vocab_size,
        config.d_model,
        config.layers,
        config.dropout,
        tie_weights=config.tie_output_embeddings,
        init_range=config.init_range,
    )
