"""The LSTM language model: shapes, weight tying, state carried across chunks giving the same
logits as one long pass (what truncated back-propagation relies on), and per-key modules that
share one parameter set, with padding masked out of the loss."""

from __future__ import annotations

import torch

from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.models.lm import LSTMLanguageModel, lm_sym_gen
from nmtbucket.training.loss import masked_cross_entropy


def test_chunks_with_carried_state_equal_one_pass() -> None:
    torch.manual_seed(0)
    model = LSTMLanguageModel(vocab_size=30, d_model=8, num_layers=2, dropout=0.5).eval()
    tokens = torch.randint(0, 30, (3, 10))
    whole, _ = model(tokens, model.initial_state(3))
    first, state = model(tokens[:, :4], model.initial_state(3))
    second, _ = model(tokens[:, 4:], state)
    assert whole.shape == (3, 10, 30)
    assert torch.allclose(torch.cat([first, second], dim=1), whole, atol=1e-6)


def test_tied_weights_share_one_matrix_and_init_range_holds() -> None:
    model = LSTMLanguageModel(
        vocab_size=30, d_model=8, num_layers=1, dropout=0.0, tie_weights=True, init_range=0.05
    )
    assert model.output.weight is model.embed.weight
    assert all(float(p.detach().abs().max()) <= 0.05 for p in model.parameters())
    untied = LSTMLanguageModel(vocab_size=30, d_model=8, num_layers=1, dropout=0.0)
    assert (
        sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters())
        == 30 * 8
    )


def test_keys_share_parameters_and_padding_is_masked_out_of_the_loss() -> None:
    torch.manual_seed(0)
    core = LSTMLanguageModel(vocab_size=30, d_model=8, num_layers=2, dropout=0.0)
    model = BucketingModule(lm_sym_gen(core), default_bucket_key=6).eval()
    tokens = torch.randint(0, 30, (2, 7))
    lengths = torch.tensor([6, 3])
    padded = LMBatch(tokens[:, :6], tokens[:, 1:], lengths)  # row 1 is padding after 3
    logits, _ = model(padded)
    terms = masked_cross_entropy(logits, padded.targets, padded.mask)
    assert int(terms.num_tokens) == 9
    short = LMBatch(tokens[1:, :3], tokens[1:, 1:4], torch.tensor([3]))
    short_logits, _ = model(short)  # another key, the same parameters
    assert model.built_bucket_keys == (6, 3)
    assert len(list(model.parameters())) == len(list(core.parameters()))
    alone = masked_cross_entropy(short_logits, short.targets, short.mask)
    row0 = masked_cross_entropy(logits[:1], padded.targets[:1], padded.mask[:1])
    assert torch.allclose(terms.nll_sum, row0.nll_sum + alone.nll_sum, atol=1e-5)


def test_a_carried_state_continues_the_stream() -> None:
    torch.manual_seed(0)
    core = LSTMLanguageModel(vocab_size=30, d_model=8, num_layers=1, dropout=0.0)
    model = BucketingModule(lm_sym_gen(core), default_bucket_key=4).eval()
    tokens = torch.randint(0, 30, (2, 9))
    full = torch.full((2,), 4)
    first_logits, state = model(LMBatch(tokens[:, :4], tokens[:, 1:5], full))
    second_logits, _ = model(LMBatch(tokens[:, 4:8], tokens[:, 5:9], full, state))
    whole, _ = core(tokens[:, :8], core.initial_state(2))
    assert torch.allclose(torch.cat([first_logits, second_logits], dim=1), whole, atol=1e-6)
