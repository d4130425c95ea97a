"""Model factories: check a :class:`ModelConfig`, build the shared encoder-decoder once, and give
the ``sym_gen`` that wraps it for each bucket key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from nmtbucket.bucketing.keys import LengthPair
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.config import CHOICES, ModelConfig
from nmtbucket.constants import EOS_ID
from nmtbucket.errors import NmtBucketError
from nmtbucket.models.base import EncoderState, KeyedSeq2Seq, Seq2Seq, teacher_forcing_input
from nmtbucket.models.lstm import LSTMSeq2Seq
from nmtbucket.models.transformer import Transformer

ARCHS: dict[str, type[Transformer] | type[LSTMSeq2Seq]] = {
    "transformer": Transformer,
    "lstm": LSTMSeq2Seq,
}
LSTM_ATTENTION = CHOICES["model.attention"]

Seq2SeqSymGen = Callable[[LengthPair], KeyedSeq2Seq]


def validate_model_config(config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> None:
    """Raise :class:`NmtBucketError` naming the offending ``model.*`` key, with a fix."""
    if config.arch not in ARCHS:
        raise NmtBucketError(f"model.arch must be one of {sorted(ARCHS)}, got {config.arch!r}")
    for name in ("d_model", "encoder_layers", "decoder_layers"):
        if getattr(config, name) < 1:
            raise NmtBucketError(f"model.{name} must be at least 1, got {getattr(config, name)}")
    for name in ("dropout", "attention_dropout"):
        if not 0.0 <= getattr(config, name) < 1.0:
            raise NmtBucketError(f"model.{name} must be in [0, 1), got {getattr(config, name)}")
    for side, size in (("source", src_vocab_size), ("target", tgt_vocab_size)):
        if size <= EOS_ID:
            raise NmtBucketError(
                f"the {side} vocabulary has {size} entries, fewer than the special tokens "
                "(pad, unk, bos, eos); check data.tokenizer.vocab_size"
            )
    if config.share_embeddings and src_vocab_size != tgt_vocab_size:
        raise NmtBucketError(
            f"model.share_embeddings needs one joint vocabulary, but the source has "
            f"{src_vocab_size} entries and the target {tgt_vocab_size}; set "
            "data.tokenizer.joint=true or model.share_embeddings=false"
        )
    if config.arch == "transformer":
        _validate_transformer(config)
    elif config.attention not in LSTM_ATTENTION:
        raise NmtBucketError(
            f"model.attention must be one of {list(LSTM_ATTENTION)}, got {config.attention!r}"
        )


def _validate_transformer(config: ModelConfig) -> None:
    if config.num_heads < 1 or config.d_ff < 1:
        raise NmtBucketError(
            f"model.num_heads and model.d_ff must be at least 1, got {config.num_heads} and "
            f"{config.d_ff}"
        )
    if config.d_model % config.num_heads != 0:
        raise NmtBucketError(
            f"model.d_model ({config.d_model}) must be divisible by model.num_heads "
            f"({config.num_heads}); change one of them"
        )
    if config.d_model % 2 != 0:
        raise NmtBucketError(
            f"model.d_model must be even for sinusoidal positions, got {config.d_model}"
        )


def build_seq2seq(config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2Seq[Any]:
    """The shared encoder-decoder layers that ``config.arch`` names, after validating."""
    validate_model_config(config, src_vocab_size, tgt_vocab_size)
    return ARCHS[config.arch](config, src_vocab_size, tgt_vocab_size)


def seq2seq_sym_gen(core: Seq2Seq[Any]) -> Seq2SeqSymGen:
    """``sym_gen`` wrapping ``core`` for each ``LengthPair`` key: one parameter set for all."""

    def sym_gen(bucket_key: LengthPair) -> KeyedSeq2Seq:
        return KeyedSeq2Seq(core, bucket_key)

    return sym_gen


def build_sym_gen(config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int) -> Seq2SeqSymGen:
    """Validate ``config``, build the core once, and return the ``sym_gen`` wrapping it.

    ``sym_gen(key)(batch)`` gives teacher-forced logits (B, T, tgt_vocab_size); the module it
    returns exposes the shared layers as ``.core`` (for search)."""
    return seq2seq_sym_gen(build_seq2seq(config, src_vocab_size, tgt_vocab_size))


def seq2seq_core(module: nn.Module) -> Seq2Seq[Any]:
    """The shared encoder-decoder (for search) inside a BucketingModule or a keyed module that
    :func:`build_sym_gen` made."""
    if isinstance(module, BucketingModule):
        module = module.default_module
    if not isinstance(module, KeyedSeq2Seq):
        raise NmtBucketError(
            f"{type(module).__name__} holds no nmtbucket encoder-decoder; search needs a model "
            "whose sym_gen came from nmtbucket.models.build_sym_gen"
        )
    return module.core


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements, each shared (tied) tensor counted once."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "ARCHS",
    "EncoderState",
    "KeyedSeq2Seq",
    "LSTMSeq2Seq",
    "Seq2Seq",
    "Seq2SeqSymGen",
    "Transformer",
    "build_seq2seq",
    "build_sym_gen",
    "count_parameters",
    "seq2seq_core",
    "seq2seq_sym_gen",
    "teacher_forcing_input",
    "validate_model_config",
]
