"""The language-model step, loss normalisation, per-epoch decay and perplexity evaluation:
state carried only within a stream, the Zaremba loss scale, every held-out token counted once
and padding counted nowhere."""

from __future__ import annotations

import math

import pytest
import torch

from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.bucketing.sampler import BucketBatchSampler
from nmtbucket.config import TrainerConfig
from nmtbucket.data.lm_batch import collate_sentences
from nmtbucket.data.sentence_batches import SentenceBatches, sentence_lengths
from nmtbucket.data.stream import StreamBatches
from nmtbucket.errors import NmtBucketError
from nmtbucket.lm.evaluator import PerplexityEvaluator
from nmtbucket.lm.step import LanguageModelStep
from nmtbucket.models.lm import LSTMLanguageModel, lm_sym_gen
from nmtbucket.training.loss import masked_cross_entropy
from nmtbucket.training.optim import build_optimizer, lr_multiplier
from nmtbucket.training.step import WindowCounts

VOCAB = 20


def _model(default_key: int, dropout: float = 0.0) -> BucketingModule:
    torch.manual_seed(0)
    core = LSTMLanguageModel(VOCAB, d_model=8, num_layers=2, dropout=dropout)
    return BucketingModule(lm_sym_gen(core), default_key)


def test_the_step_carries_the_state_within_a_stream_and_resets_it_at_an_epoch_start() -> None:
    model = _model(4).eval()  # no dropout: runs are comparable
    tokens = torch.randint(0, VOCAB, (33,), generator=torch.Generator().manual_seed(1))
    stream = StreamBatches(tokens, batch_size=2, bptt=4)
    step = LanguageModelStep()
    batches = list(stream)
    losses = [float(model.train_step(b, step)) for b in batches]
    core = model.default_module.core
    with torch.no_grad():  # the same numbers from one unrolled pass over whole columns
        logits, _ = core(stream.inputs, core.initial_state(2))  # (B, L, V)
        mask = torch.arange(stream.inputs.shape[1])[None, :] < stream.column_lengths[:, None]
        whole = masked_cross_entropy(logits, stream.targets, mask)
    first = batches[0]
    chunk = masked_cross_entropy(logits[:, :4], first.targets, first.mask)
    assert losses[0] == pytest.approx(float(chunk.loss_sum / chunk.num_tokens), rel=1e-5)
    tokens_per_batch = [b.num_target_tokens for b in batches]
    total = sum(loss * n for loss, n in zip(losses, tokens_per_batch, strict=True))
    assert total == pytest.approx(float(whole.nll_sum), rel=1e-5)
    again = float(model.train_step(first, step))  # continues=False: from zeros again
    assert again == pytest.approx(losses[0], rel=1e-6)


def test_padding_is_masked_out_of_the_training_loss_and_gradient() -> None:
    eos = 0
    sentences = [[3, 4, 5, 6, eos], [7, eos]]
    model = _model(8).eval()  # no dropout
    step = LanguageModelStep()
    step.normalizer = 7.0  # the real tokens of both
    padded = collate_sentences(sentences, 8, eos)  # row 1 is 6 positions of padding
    model.train_step(padded, step)
    padded_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for sentence in sentences:  # each alone, at its own length: no padding at all
        model.train_step(collate_sentences([sentence], len(sentence), eos), step)
    for with_padding, without in zip(padded_grads, model.parameters(), strict=True):
        assert without.grad is not None
        assert torch.allclose(with_padding, without.grad, atol=1e-6)


def test_a_skipped_update_discards_the_carried_state_and_a_made_one_keeps_it() -> None:
    stream = StreamBatches(torch.arange(40) % VOCAB, batch_size=2, bptt=4)
    step = LanguageModelStep()
    _model(4).train_step(stream.batch(0), step)
    carried = step.state_dict()["hidden"].clone()
    assert carried.abs().sum() > 0
    step.discard_state_if(torch.tensor(0.0))  # the update was made
    assert torch.equal(step.state_dict()["hidden"], carried)
    step.state_dict()["hidden"].fill_(float("nan"))  # what a bad batch may leave
    step.discard_state_if(torch.tensor(1.0))  # the update was skipped
    assert all(torch.equal(t, torch.zeros_like(t)) for t in step.state_dict().values())


def test_the_carried_state_survives_a_state_dict_round_trip() -> None:
    model = _model(4)
    stream = StreamBatches(torch.arange(40) % VOCAB, batch_size=2, bptt=4)
    step = LanguageModelStep()
    batches = list(stream)
    model.train_step(batches[0], step)
    saved = step.state_dict()
    resumed = LanguageModelStep()
    resumed.load_state_dict(saved)
    model.eval()
    assert float(model.train_step(batches[1], resumed)) == float(model.train_step(batches[1], step))
    assert LanguageModelStep().state_dict() == {}


def test_row_normalisation_scales_the_token_mean_by_the_unroll_length() -> None:
    stream = StreamBatches(torch.arange(81) % VOCAB, batch_size=4, bptt=5)
    window = list(stream)[:2]  # 2 full batches of 4 rows x 5 positions
    assert WindowCounts.of(window).normalizer("token") == 40
    assert (
        WindowCounts.of(window).normalizer("row") == 8
    )  # sum over time, mean over rows: 5x the token mean
    with pytest.raises(NmtBucketError, match=r"trainer\.loss_per"):
        WindowCounts.of(window).normalizer("word")


def test_epoch_decay_keeps_the_rate_for_full_epochs_then_multiplies_it_each_epoch() -> None:
    config = TrainerConfig(
        schedule="epoch_decay", warmup_updates=0, full_lr_epochs=2, lr_decay=0.5, lr=1.0
    )
    epoch = 0
    rate = lr_multiplier(config, epoch_of=lambda: epoch)
    rates = []
    for epoch in range(5):  # noqa: B007 - the closure reads it
        rates.append(rate(123))  # the epoch decides, not the update count
    assert rates == [1, 1, 0.5, 0.25, 0.125]
    with pytest.raises(NmtBucketError, match=r"needs to know the training epoch"):
        lr_multiplier(config)
    sgd = build_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainerConfig(optimizer="sgd"))
    assert isinstance(sgd, torch.optim.SGD)


def test_stream_perplexity_counts_every_token_once_and_batch_one_equals_one_pass() -> None:
    model = _model(5)
    tokens = torch.randint(0, VOCAB, (58,), generator=torch.Generator().manual_seed(2))
    scores = {}
    for columns in (1, 3):
        stream = StreamBatches(tokens, batch_size=columns, bptt=5)
        batches = [stream.batch(i) for i in range(len(stream))]
        scores[columns] = PerplexityEvaluator("valid", batches, torch.device("cpu"), False)
    one = scores[1].evaluate(model)
    assert one.num_tokens == scores[3].evaluate(model).num_tokens == len(tokens) - 1
    core = model.default_module.core.eval()
    with torch.no_grad():
        logits, _ = core(tokens[None, :-1], core.initial_state(1))
        nll = masked_cross_entropy(logits, tokens[None, 1:], torch.ones(1, 57, dtype=torch.bool))
    assert one.loss == pytest.approx(float(nll.nll_sum) / 57, rel=1e-5)
    assert one.perplexity == pytest.approx(math.exp(one.loss))
    assert model.training  # the evaluator restores the mode


def test_sentence_perplexity_leaves_padding_out() -> None:
    eos = 0
    generator = torch.Generator().manual_seed(3)
    sentences = [
        [*torch.randint(1, VOCAB, (n,), generator=generator).tolist(), eos] for n in (2, 7, 4, 1)
    ]
    lengths = sentence_lengths(sentences)
    model = _model(9)
    sampler = BucketBatchSampler(lengths, (5, 9), {5: 3, 9: 3}, shuffle=False)
    batched = list(SentenceBatches(sentences, sampler, eos))
    assert any(bool((~b.mask).any()) for b in batched)  # there is padding to leave out
    padded = PerplexityEvaluator("test", batched, torch.device("cpu"), False).evaluate(model)
    alone = [collate_sentences([s], len(s), eos) for s in sentences]  # no padding at all
    unpadded = PerplexityEvaluator("test", alone, torch.device("cpu"), False).evaluate(model)
    assert padded.num_tokens == unpadded.num_tokens == sum(len(s) for s in sentences)
    assert padded.loss == pytest.approx(unpadded.loss, rel=1e-5)
