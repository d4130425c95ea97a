"""A trained Transformer converted to CTranslate2 (fast CPU and GPU serving, int8 included),
through its Python spec API: pre-norm layers, sinusoidal positions (nmtbucket's interleaved
table, stored in the model), embeddings scaled by sqrt(d_model), EOS appended to the source,
shared or tied embeddings as trained. The sentencepiece models are copied beside it.
ctranslate2 is an optional extra (``pip install 'nmtbucket[ctranslate2]'``). LSTM models have
no matching CTranslate2 spec and are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nmtbucket.errors import NmtBucketError
from nmtbucket.files import atomic_copy
from nmtbucket.models.transformer import Transformer, sinusoid_table
from nmtbucket.translation.export import new_output_folder
from nmtbucket.translation.run_folder import RunFolder

INSTALL = "pip install 'nmtbucket[ctranslate2]'"
QUANTIZATIONS = ("int8", "int8_float32", "int16", "float16", "bfloat16")
POSITIONS = 1024  # rows of the stored position table: the longest input or output


def export_ctranslate2(
    run_dir: str | Path,
    output: str | Path,
    weights: str = "best",
    average: int = 1,
    quantization: str | None = None,
) -> Path:
    """Write the CTranslate2 model folder ``output`` (new, or empty) of the Transformer run
    ``run_dir`` with the chosen weights, stored as ``quantization`` (None: float32)."""
    try:
        from ctranslate2.specs import common_spec, transformer_spec
    except ImportError:
        raise NmtBucketError(f"exporting to CTranslate2 needs ctranslate2: {INSTALL}") from None
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise NmtBucketError(f"--quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    folder = RunFolder.open(run_dir)
    model = folder.model_config()
    arch = model.arch
    if arch != "transformer":
        raise NmtBucketError(
            f"{folder.path} holds a model.arch={arch} model: CTranslate2 has no spec matching "
            "nmtbucket's LSTM encoder-decoder, so only Transformer runs are exported to it "
            "(nmtbucket-export without --ctranslate2 writes safetensors for any model)"
        )
    output = new_output_folder(output)
    core = folder.build_model(weights, average)
    assert isinstance(core, Transformer)
    src_tokenizer, tgt_tokenizer = folder.tokenizers()
    spec = transformer_spec.TransformerSpec.from_config(
        (model.encoder_layers, model.decoder_layers),
        model.num_heads,
        pre_norm=True,
        activation=common_spec.Activation.RELU,
    )
    spec.config.add_source_eos = True  # nmtbucket's sources end with EOS, no BOS
    spec.config.layer_norm_epsilon = core.encoder_norm.eps
    _fill_encoder(spec.encoder, core)
    _fill_decoder(spec.decoder, core)
    spec.register_source_vocabulary(_pieces(src_tokenizer))
    spec.register_target_vocabulary(_pieces(tgt_tokenizer))
    spec.validate()
    spec.optimize(quantization=quantization)
    output.mkdir(parents=True, exist_ok=True)
    spec.save(str(output))
    for name in ("src.spm.model", "tgt.spm.model"):
        atomic_copy(folder.path / name, output / name)
    return output


def _pieces(tokenizer: Any) -> list[str]:
    return [tokenizer.piece(i) for i in range(tokenizer.vocab_size)]


def _array(tensor: torch.Tensor) -> Any:
    return tensor.detach().to(torch.float32).contiguous().numpy()


def _linear(spec: Any, layer: Any) -> None:
    spec.weight = _array(layer.weight)
    if layer.bias is not None:
        spec.bias = _array(layer.bias)


def _fused(spec: Any, *layers: Any) -> None:
    """One linear spec from several layers stacked along the output (queries, keys, values)."""
    spec.weight = _array(torch.cat([layer.weight for layer in layers]))
    spec.bias = _array(torch.cat([layer.bias for layer in layers]))


def _norm(spec: Any, norm: Any) -> None:
    spec.gamma = _array(norm.weight)
    spec.beta = _array(norm.bias)


def _feed_forward(spec: Any, layer: Any) -> None:
    _norm(spec.layer_norm, layer.ff_norm)
    _linear(spec.linear_0, layer.ff[0])
    _linear(spec.linear_1, layer.ff[3])


def _fill_encoder(spec: Any, core: Any) -> None:
    spec.scale_embeddings = True
    spec.embeddings[0].weight = _array(core.src_embed.weight)
    spec.position_encodings.encodings = _array(
        sinusoid_table(POSITIONS, core.src_embed.embedding_dim)
    )
    _norm(spec.layer_norm, core.encoder_norm)
    for layer_spec, layer in zip(spec.layer, core.encoder_layers, strict=True):
        attention = layer_spec.self_attention
        _norm(attention.layer_norm, layer.attn_norm)
        _fused(attention.linear[0], layer.attn.query, layer.attn.key_value)
        _linear(attention.linear[1], layer.attn.out)
        _feed_forward(layer_spec.ffn, layer)


def _fill_decoder(spec: Any, core: Any) -> None:
    spec.scale_embeddings = True
    spec.embeddings.weight = _array(core.tgt_embed.weight)
    spec.position_encodings.encodings = _array(
        sinusoid_table(POSITIONS, core.tgt_embed.embedding_dim)
    )
    _norm(spec.layer_norm, core.decoder_norm)
    spec.projection.weight = _array(core.output.weight)
    for layer_spec, layer in zip(spec.layer, core.decoder_layers, strict=True):
        _norm(layer_spec.self_attention.layer_norm, layer.self_norm)
        _fused(
            layer_spec.self_attention.linear[0], layer.self_attn.query, layer.self_attn.key_value
        )
        _linear(layer_spec.self_attention.linear[1], layer.self_attn.out)
        cross = layer_spec.attention
        _norm(cross.layer_norm, layer.cross_norm)
        _linear(cross.linear[0], layer.cross_attn.query)
        _linear(cross.linear[1], layer.cross_attn.key_value)
        _linear(cross.linear[2], layer.cross_attn.out)
        _feed_forward(layer_spec.ffn, layer)
