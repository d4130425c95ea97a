"""Gradient accumulation: micro-batches of any keys give the gradient of their union."""

from __future__ import annotations

import torch

from nmtbucket.bucketing.keys import LengthPair
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.config import ModelConfig
from nmtbucket.constants import EOS_ID
from nmtbucket.data.batch import Batch, collate
from nmtbucket.data.dataset import SequenceDataset, TokenSequences
from nmtbucket.models import build_sym_gen
from nmtbucket.training.step import WindowCounts
from nmtbucket.translation.step import Seq2SeqStep


def _dataset() -> SequenceDataset:
    generator = torch.Generator().manual_seed(0)
    lengths = [(3, 2), (5, 6), (2, 7), (8, 8), (6, 3)]
    src, tgt = [], []
    for s, t in lengths:
        src.append([*torch.randint(4, 20, (s - 1,), generator=generator).tolist(), EOS_ID])
        tgt.append([*torch.randint(4, 20, (t - 1,), generator=generator).tolist(), EOS_ID])
    return SequenceDataset(TokenSequences.from_lists(src), TokenSequences.from_lists(tgt))


def _gradients(
    model: BucketingModule, batches: list[Batch], step: Seq2SeqStep
) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    step.normalizer = WindowCounts.of(batches).normalizer("token")
    for batch in batches:
        model.train_step(batch, step)
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_accumulated_micro_batches_give_the_union_gradient() -> None:
    torch.manual_seed(0)
    config = ModelConfig(d_model=16, encoder_layers=1, decoder_layers=1, num_heads=2, d_ff=32)
    config.dropout = 0.0
    model = BucketingModule(build_sym_gen(config, 20, 20), LengthPair(8, 8))
    model.train()
    data = _dataset()
    small = collate(data, [0, 4], LengthPair(6, 3), pad_id=0)  # 2 rows, 8 target tokens
    large = collate(data, [1, 2, 3], LengthPair(8, 8), pad_id=0)  # 3 rows, 21 target tokens
    union = collate(data, [0, 4, 1, 2, 3], LengthPair(8, 8), pad_id=0)
    step = Seq2SeqStep(label_smoothing=0.1)
    accumulated = _gradients(model, [small, large], step)
    together = _gradients(model, [union], step)
    assert len(accumulated) == len(together) > 0
    for a, b in zip(accumulated, together, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
