"""Label-smoothed cross-entropy: exact values by hand, padding ignored, agreement with PyTorch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nmtbucket.errors import NmtBucketError
from nmtbucket.training.loss import label_smoothed_cross_entropy

PAD = 0


def test_hand_computed_example() -> None:
    # Position 0: p = (1/4, 1/4, 1/2), gold 2: nll = ln 2, mean log p = -(5/3) ln 2, so with
    # eps = 0.3: 0.7 ln 2 + 0.3 * (5/3) ln 2 = 1.2 ln 2. Position 1: uniform, nll = ln 3 = loss.
    # Position 2 is padding.
    logits = torch.tensor([[[0.0, 0.0, math.log(2.0)], [5.0, 5.0, 5.0], [9.0, -9.0, 3.0]]])
    target = torch.tensor([[2, 1, PAD]])
    terms = label_smoothed_cross_entropy(logits, target, PAD, smoothing=0.3)
    assert terms.loss_sum.item() == pytest.approx(1.2 * math.log(2) + math.log(3), abs=1e-6)
    assert terms.nll_sum.item() == pytest.approx(math.log(2) + math.log(3), abs=1e-6)
    assert terms.num_tokens.item() == 2
    assert terms.loss_sum.shape == terms.nll_sum.shape == terms.num_tokens.shape == ()


def random_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, 7, generator=g) * 3  # (B, T, V)
    target = torch.randint(1, 7, (3, 5), generator=g)
    target[0, 3:] = PAD
    target[2, 1:] = PAD
    return logits, target


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_equals_pytorch_cross_entropy(smoothing: float) -> None:
    logits, target = random_case()
    terms = label_smoothed_cross_entropy(logits, target, PAD, smoothing)
    flat_logits, flat_target = logits.reshape(-1, 7), target.reshape(-1)
    expected = F.cross_entropy(
        flat_logits, flat_target, ignore_index=PAD, reduction="sum", label_smoothing=smoothing
    )
    nll = F.cross_entropy(flat_logits, flat_target, ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(terms.loss_sum, expected)
    torch.testing.assert_close(terms.nll_sum, nll)
    assert terms.num_tokens.item() == int((target != PAD).sum())


def test_padding_positions_do_not_matter() -> None:
    logits, target = random_case()
    changed = torch.where((target == PAD)[..., None], torch.randn_like(logits) * 100, logits)
    a = label_smoothed_cross_entropy(logits, target, PAD, 0.1)
    b = label_smoothed_cross_entropy(changed, target, PAD, 0.1)
    assert a.loss_sum.item() == b.loss_sum.item()
    assert a.nll_sum.item() == b.nll_sum.item()
    empty = label_smoothed_cross_entropy(logits, torch.full_like(target, PAD), PAD, 0.1)
    assert empty.loss_sum.item() == empty.nll_sum.item() == empty.num_tokens.item() == 0


def test_bf16_logits_give_float32_sums() -> None:
    logits, target = random_case()
    terms = label_smoothed_cross_entropy(logits.bfloat16(), target, PAD, 0.1)
    assert terms.loss_sum.dtype == terms.nll_sum.dtype == torch.float32
    reference = label_smoothed_cross_entropy(logits.bfloat16().float(), target, PAD, 0.1)
    assert terms.loss_sum.item() == reference.loss_sum.item()


def test_smoothing_out_of_range_is_a_user_error() -> None:
    logits, target = random_case()
    with pytest.raises(NmtBucketError, match="label_smoothing"):
        label_smoothed_cross_entropy(logits, target, PAD, 1.0)
