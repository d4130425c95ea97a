"""Greedy search on a scripted core (exact) and on real tiny models (batch = one at a time)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from nmtbucket.config import ModelConfig
from nmtbucket.constants import BOS_ID, EOS_ID, PAD_ID
from nmtbucket.errors import NmtBucketError
from nmtbucket.models import build_seq2seq
from nmtbucket.models.base import EncoderState, KeyBuffers, Seq2Seq, source_mask
from nmtbucket.search import greedy_search, max_output_lengths, trim_outputs

VOCAB = 10


@dataclass
class CopyState:
    src: torch.Tensor  # (B, S)


class CopyCore(Seq2Seq[CopyState]):
    """Scripted: at step t it is certain of token ``src[b, t % S]``; it records what it was fed."""

    def __init__(self) -> None:
        super().__init__(VOCAB, VOCAB, d_model=1)
        self.fed: list[list[int]] = []

    def encode(
        self, src: torch.Tensor, src_lengths: torch.Tensor, buffers: KeyBuffers | None = None
    ) -> EncoderState:
        return EncoderState(src[..., None].float(), source_mask(src_lengths, src.shape[1]))

    def decode(
        self, tgt_in: torch.Tensor, encoder_state: EncoderState, buffers: KeyBuffers | None = None
    ) -> torch.Tensor:
        raise NotImplementedError("search only steps")

    def init_decoder_state(
        self, encoder_state: EncoderState, max_output_len: int, static: bool = False
    ) -> CopyState:
        return CopyState(encoder_state.memory[..., 0].long())

    def decode_step(
        self, state: CopyState, prev_tokens: torch.Tensor, step: int | torch.Tensor
    ) -> tuple[torch.Tensor, CopyState]:
        self.fed.append(prev_tokens.tolist())
        tokens = state.src[:, int(step) % state.src.shape[1]]  # (B,)
        return F.one_hot(tokens, VOCAB).float() * 10, state

    def reorder_state(
        self, state: CopyState, indices: torch.Tensor, sentences: torch.Tensor | None = None
    ) -> CopyState:
        return CopyState(state.src[indices])


SRC = torch.tensor(
    [
        [5, 6, EOS_ID, PAD_ID, PAD_ID],
        [7, EOS_ID, PAD_ID, PAD_ID, PAD_ID],
        [4, 4, 4, 4, 4],  # no EOS: the row only ends at its limit
    ]
)
SRC_LENGTHS = torch.tensor([3, 2, 5])


def test_stops_at_eos_and_removes_it() -> None:
    core = CopyCore()
    out = greedy_search(core, SRC, SRC_LENGTHS, torch.tensor([9, 9, 7]))
    assert out == [[5, 6], [7], [4] * 7]
    assert core.fed[0] == [BOS_ID] * 3
    assert core.fed[1] == [5, 7, 4]  # each step is fed the previous step's arg-max ...
    assert core.fed[2] == [6, 4]  # ... and row 1, which ended with EOS, has left the batch


def test_respects_each_rows_limit_and_stops_when_all_are_done() -> None:
    core = CopyCore()
    out = greedy_search(core, SRC, SRC_LENGTHS, torch.tensor([1, 5, 3]))
    assert out == [[5], [7], [4, 4, 4]]
    assert len(core.fed) == 3  # row 2 reached its limit of 3; no further steps
    short = greedy_search(CopyCore(), SRC, SRC_LENGTHS, torch.tensor([2, 1, 1]))
    assert short == [[5, 6], [7], [4]]


def test_empty_inputs() -> None:
    assert greedy_search(CopyCore(), SRC[:0], SRC_LENGTHS[:0], SRC_LENGTHS[:0]) == []
    no_room = torch.zeros(3, dtype=torch.long)
    assert greedy_search(CopyCore(), SRC, SRC_LENGTHS, no_room) == [[], [], []]


def test_trim_outputs_cuts_at_limit_then_first_eos() -> None:
    tokens = torch.tensor([[4, EOS_ID, 5, EOS_ID], [4, 5, 6, 7], [EOS_ID, 4, 4, 4]])
    assert trim_outputs(tokens, torch.tensor([4, 3, 4]), EOS_ID) == [[4], [4, 5, 6], []]


@pytest.mark.parametrize(
    ("src_lengths", "ratio", "extra", "cap", "expected"),
    [
        ([0, 3, 10], 1.5, 2, 12, [2, 6, 12]),
        ([1, 4], 2.0, 10, 200, [12, 18]),
        ([0, 5], 0.0, 0, 9, [1, 1]),
        ([7], 1.0, -3, 9, [4]),
    ],
)
def test_max_output_lengths(src_lengths, ratio, extra, cap, expected) -> None:
    got = max_output_lengths(torch.tensor(src_lengths), ratio, extra, cap)
    assert got.dtype == torch.int64
    assert got.tolist() == expected


def test_max_output_lengths_rejects_a_useless_cap() -> None:
    with pytest.raises(NmtBucketError, match=r"search\.max_output_len"):
        max_output_lengths(torch.tensor([3]), 1.0, 1, 0)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_batch_results_equal_one_at_a_time(arch: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, d_model=16, encoder_layers=1, decoder_layers=2, num_heads=2)
    core = build_seq2seq(config, VOCAB, VOCAB).eval()
    src = torch.randint(4, VOCAB, (4, 6))
    src_lengths = torch.tensor([6, 2, 4, 1])
    src = src.masked_fill(torch.arange(6)[None, :] >= src_lengths[:, None], PAD_ID)
    src[torch.arange(4), src_lengths - 1] = EOS_ID
    limits = torch.tensor([8, 3, 1, 12])
    batched = greedy_search(core, src, src_lengths, limits)
    for b, row in enumerate(batched):
        n = int(src_lengths[b])
        alone = greedy_search(core, src[b : b + 1, :n], src_lengths[b : b + 1], limits[b : b + 1])
        assert alone == [row]
        assert len(row) <= limits[b]
    assert any(len(row) > 1 for row in batched)  # the test exercises more than one step


def test_forbid_tokens_masks_pad_and_bos_only() -> None:
    from nmtbucket.search.limits import forbid_tokens

    logits = torch.zeros(2, 5)
    masked = forbid_tokens(logits)
    assert torch.isinf(masked[:, [PAD_ID, BOS_ID]]).all()
    assert (masked[:, [1, 3, 4]] == 0).all() and (logits == 0).all()  # a copy
