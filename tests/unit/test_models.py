"""Transformer and LSTM encoder-decoders: parameter sharing across keys, padding invariance,
incremental decoding equal to teacher forcing, filler rows, tied embeddings, config errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from nmtbucket import (
    BucketingModule,
    LengthPair,
    NmtBucketError,
    SequenceDataset,
    TokenSequences,
    collate,
)
from nmtbucket.config import ModelConfig
from nmtbucket.constants import BOS_ID, EOS_ID, PAD_ID
from nmtbucket.data import FILLER
from nmtbucket.models import (
    Seq2Seq,
    build_seq2seq,
    build_sym_gen,
    count_parameters,
    seq2seq_core,
)
from nmtbucket.models.base import teacher_forcing_input
from nmtbucket.search import greedy_search, max_output_lengths
from nmtbucket.training.loss import label_smoothed_cross_entropy

VOCAB = 13
ARCHS = ["transformer", "lstm"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine spinning threads made
    training tests many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(arch: str, **overrides: Any) -> ModelConfig:
    config = ModelConfig(
        arch=arch, d_model=16, encoder_layers=2, decoder_layers=2, num_heads=2, d_ff=32
    )
    return dataclasses.replace(config, **overrides)


def make_batch(key: LengthPair, num_filler: int = 0, seed: int = 0):
    """Three random pairs ending in EOS that fill the key exactly, then ``num_filler`` fillers."""
    g = torch.Generator().manual_seed(seed)

    def sequences(max_len: int) -> TokenSequences:
        lengths = [max_len, 1, *torch.randint(1, max_len + 1, (1,), generator=g).tolist()]
        return TokenSequences.from_lists(
            [[*torch.randint(4, VOCAB, (n - 1,), generator=g).tolist(), EOS_ID] for n in lengths]
        )

    data = SequenceDataset(sequences(key.src_len), sequences(key.tgt_len))
    return collate(data, [0, 1, 2] + [FILLER] * num_filler, key, pad_id=PAD_ID)


def eval_core(config: ModelConfig) -> Seq2Seq:
    torch.manual_seed(0)
    return build_seq2seq(config, VOCAB, VOCAB).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_every_key_shares_the_parameters_and_keeps_its_own_buffers(arch: str) -> None:
    torch.manual_seed(0)
    module = BucketingModule(build_sym_gen(tiny_config(arch), VOCAB, VOCAB), LengthPair(9, 11))
    default = dict(module.default_module.named_parameters())
    for key in [LengthPair(3, 4), LengthPair(9, 2), LengthPair(5, 7)]:
        keyed = module.bucket_module(key)
        params = dict(keyed.named_parameters())
        assert params.keys() == default.keys()
        assert all(params[name] is default[name] for name in params)
        assert keyed.state_dict().keys() == module.default_module.state_dict().keys()
        logits = module(make_batch(key, num_filler=1))
        assert logits.shape == (4, key.tgt_len, VOCAB)
        assert logits.dtype == torch.float32
        if arch == "transformer":
            assert keyed.get_buffer("causal_mask").shape == (key.tgt_len, key.tgt_len)
            assert keyed.get_buffer("positions").shape == (max(key), 16)
    assert module.built_bucket_keys[0] == LengthPair(9, 11)
    assert seq2seq_core(module) is module.default_module.core
    with pytest.raises(NmtBucketError, match="build_sym_gen"):
        seq2seq_core(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_to_a_larger_key_does_not_change_the_logits(arch: str) -> None:
    torch.manual_seed(0)
    sym_gen = build_sym_gen(tiny_config(arch), VOCAB, VOCAB)
    small_key, large_key = LengthPair(5, 6), LengthPair(9, 11)
    batch = make_batch(small_key, num_filler=1)
    small, large = sym_gen(small_key).eval(), sym_gen(large_key).eval()
    with torch.no_grad():
        expected = small(batch)  # (4, 6, V)
        padded = large(batch.pad_to(large_key, PAD_ID))  # (4, 11, V)
    torch.testing.assert_close(padded[:3, :6], expected[:3], atol=1e-5, rtol=0)


INCREMENTAL_CONFIGS = [
    tiny_config("transformer"),
    tiny_config("transformer", share_embeddings=True, encoder_layers=1, decoder_layers=3),
    tiny_config("lstm"),
    tiny_config("lstm", input_feeding=False, attention="dot", bidirectional_encoder=False),
]


Reorder = tuple[torch.Tensor, torch.Tensor | None]  # reorder_state's (indices, sentences)


def step_logits(
    core: Seq2Seq, batch, tensor_steps: bool, reorders: dict[int, Reorder] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (R, T, V) from decode_step fed the gold tokens, a static state with tensor steps
    or a growing one with int steps, and the (R,) batch row of each; ``reorders`` calls
    reorder_state before the steps it names."""
    assert batch.tgt is not None
    tgt_in = teacher_forcing_input(batch.tgt)  # (B, T)
    encoded = core.encode(batch.src, batch.src_lengths)
    state = core.init_decoder_state(encoded, tgt_in.shape[1], static=tensor_steps)
    rows = torch.arange(tgt_in.shape[0])  # (R,) the batch row of each decoder row
    outputs: list[torch.Tensor] = []
    for t in range(tgt_in.shape[1]):
        if reorders and t in reorders:
            indices, sentences = reorders[t]
            state = core.reorder_state(state, indices, sentences)
            rows = rows[indices]
            outputs = [o[indices] for o in outputs]
        step = torch.tensor(t) if tensor_steps else t
        logits, state = core.decode_step(state, tgt_in[rows, t], step)  # (R, V)
        outputs.append(logits)
    return torch.stack(outputs, dim=1), rows


@pytest.mark.parametrize("config", INCREMENTAL_CONFIGS, ids=lambda c: c.arch)
@pytest.mark.parametrize("tensor_steps", [False, True])
def test_incremental_decoding_equals_teacher_forcing(config: ModelConfig, tensor_steps: bool):
    core = eval_core(config)
    batch = make_batch(LengthPair(7, 6), num_filler=1)
    with torch.no_grad():
        expected = core(batch.src, batch.src_lengths, teacher_forcing_input(batch.tgt))
        got, _ = step_logits(core, batch, tensor_steps)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("config", INCREMENTAL_CONFIGS, ids=lambda c: c.arch)
def test_reorder_state_moves_every_row_with_its_history(config: ModelConfig) -> None:
    core = eval_core(config)
    batch = make_batch(LengthPair(7, 6), num_filler=1)
    reorder = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        expected = core(batch.src, batch.src_lengths, teacher_forcing_input(batch.tgt))[reorder]
        got, _ = step_logits(core, batch, tensor_steps=False, reorders={2: (reorder, reorder)})
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("config", INCREMENTAL_CONFIGS, ids=lambda c: c.arch)
@pytest.mark.parametrize("tensor_steps", [False, True])
def test_hypotheses_share_their_sentence_and_finished_sentences_leave(
    config: ModelConfig, tensor_steps: bool
) -> None:
    """Each sentence grows to 3 hypothesis rows reading its encoder state once (no sentences
    passed), then sentence 1 leaves and the remaining rows are shuffled within sentences:
    every row still equals teacher forcing of its sentence."""
    core = eval_core(config)
    batch = make_batch(LengthPair(7, 6), num_filler=1)
    three = torch.arange(4).repeat_interleave(3)  # (12,) rows b*3 .. b*3+2 are sentence b
    kept = torch.tensor([0, 2, 3])
    shuffled = torch.tensor([2, 2, 0, 7, 6, 6, 9, 11, 10])  # rows of sentences 0, 2, 3
    reorders: dict[int, Reorder] = {1: (three, None), 3: (shuffled, kept)}
    with torch.no_grad():
        expected = core(batch.src, batch.src_lengths, teacher_forcing_input(batch.tgt))
        got, rows = step_logits(core, batch, tensor_steps, reorders)
    assert rows.tolist() == [0, 0, 0, 2, 2, 2, 3, 3, 3]
    torch.testing.assert_close(got, expected[rows], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_filler_rows_give_finite_logits_and_gradients(arch: str) -> None:
    torch.manual_seed(0)
    key = LengthPair(4, 5)
    module = build_sym_gen(tiny_config(arch), VOCAB, VOCAB)(key).train()
    batch = make_batch(key, num_filler=2)
    logits = module(batch)
    assert torch.isfinite(logits).all()
    label_smoothed_cross_entropy(logits, batch.tgt, PAD_ID, 0.1).loss_sum.backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    with torch.no_grad():
        core = module.core.eval()
        state = core.init_decoder_state(core.encode(batch.src, batch.src_lengths), 3)
        step, _ = core.decode_step(state, torch.full((5,), BOS_ID), 0)
    assert torch.isfinite(step).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_tied_and_shared_embeddings_are_one_tensor(arch: str) -> None:
    shared = build_seq2seq(tiny_config(arch, share_embeddings=True), VOCAB, VOCAB)
    assert shared.src_embed.weight is shared.tgt_embed.weight is shared.output.weight
    untied = build_seq2seq(tiny_config(arch, tie_output_embeddings=False), VOCAB, VOCAB + 2)
    assert untied.output.weight is not untied.tgt_embed.weight
    assert untied.src_embed.weight is not untied.tgt_embed.weight
    assert untied.output.weight.shape == (VOCAB + 2, 16)
    tied = build_seq2seq(tiny_config(arch), VOCAB, VOCAB + 2)
    assert count_parameters(untied) - count_parameters(tied) == (VOCAB + 2) * 16
    tied_same_vocab = build_seq2seq(tiny_config(arch), VOCAB, VOCAB)
    assert count_parameters(tied_same_vocab) - count_parameters(shared) == VOCAB * 16


@pytest.mark.parametrize(
    ("arch", "overrides", "vocab", "key_name"),
    [
        ("gru", {}, (VOCAB, VOCAB), "model.arch"),
        ("transformer", {"d_model": 30, "num_heads": 4}, (VOCAB, VOCAB), "model.num_heads"),
        ("transformer", {"d_model": 15, "num_heads": 3}, (VOCAB, VOCAB), "model.d_model"),
        ("transformer", {"share_embeddings": True}, (VOCAB, 20), "model.share_embeddings"),
        ("lstm", {"attention": "concat"}, (VOCAB, VOCAB), "model.attention"),
        ("lstm", {"dropout": 1.0}, (VOCAB, VOCAB), "model.dropout"),
        ("lstm", {"decoder_layers": 0}, (VOCAB, VOCAB), "model.decoder_layers"),
    ],
)
def test_bad_config_names_the_key(arch: str, overrides: dict, vocab: tuple, key_name: str):
    with pytest.raises(NmtBucketError, match=key_name.replace(".", r"\.")):
        build_sym_gen(tiny_config(arch, **overrides), *vocab)


def copy_batch(num: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 7, (num,), generator=g).tolist()
    rows = [[*torch.randint(4, VOCAB, (n,), generator=g).tolist(), EOS_ID] for n in lengths]
    data = SequenceDataset(TokenSequences.from_lists(rows), TokenSequences.from_lists(rows))
    return collate(data, list(range(num)), LengthPair(7, 7), pad_id=PAD_ID)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_tiny_model_learns_to_copy(arch: str) -> None:
    torch.manual_seed(0)
    config = tiny_config(
        arch, d_model=32, d_ff=64, num_heads=4, dropout=0.0, encoder_layers=1, decoder_layers=1
    )
    module = build_sym_gen(config, VOCAB, VOCAB)(LengthPair(7, 7)).train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    batch = copy_batch()
    losses = []
    for _ in range(120):
        terms = label_smoothed_cross_entropy(module(batch), batch.tgt, PAD_ID, 0.0)
        loss = terms.loss_sum / terms.num_tokens
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 20
    limits = max_output_lengths(batch.src_lengths, ratio=1.0, extra=2, cap=20)
    decoded = greedy_search(seq2seq_core(module).eval(), batch.src, batch.src_lengths, limits)
    sources = zip(batch.src.tolist(), batch.src_lengths.tolist(), strict=True)
    assert decoded == [row[: n - 1] for row, n in sources]
