"""Word-level LM data: the training vocabulary, <eos> per line, stream batches that predict every
token once per epoch under one key, and sentence batches with 1-D keys and masked padding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nmtbucket.bucketing.sampler import BucketBatchSampler
from nmtbucket.data.corpus import CorpusError
from nmtbucket.data.lm_batch import collate_sentences
from nmtbucket.data.sentence_batches import SentenceBatches, sentence_lengths
from nmtbucket.data.stream import StreamBatches
from nmtbucket.data.words import EOS_WORD, WordVocabulary
from nmtbucket.errors import NmtBucketError


def test_vocabulary_orders_by_frequency_then_alphabet_and_adds_eos(tmp_path: Path) -> None:
    lines = [" the cat <unk> ", " the dog ", " a cat "]
    vocab = WordVocabulary.build(lines)
    assert vocab.words == (EOS_WORD, "cat", "the", "<unk>", "a", "dog")
    path = tmp_path / "valid.txt"
    path.write_text(" the bird \n\n a dog \n")
    eos = vocab.index[EOS_WORD]
    assert vocab.encode_file(path) == [[2, 3, eos], [eos], [4, 5, eos]]  # bird -> <unk>


def test_an_unknown_word_without_unk_names_file_and_line(tmp_path: Path) -> None:
    vocab = WordVocabulary.build([" a b "])
    path = tmp_path / "test.txt"
    path.write_text(" a \n a zebra \n")
    with pytest.raises(CorpusError, match=r"test\.txt:2: the word 'zebra'"):
        vocab.encode_file(path)


@pytest.mark.parametrize(
    ("n", "batch_size", "bptt"),
    [(21, 2, 3), (23, 2, 4), (7, 1, 10), (10, 4, 2), (101, 7, 5)],
)
def test_stream_batches_predict_every_token_but_the_first_exactly_once_per_epoch(
    n: int, batch_size: int, bptt: int
) -> None:
    tokens = torch.arange(100, 100 + n)  # distinct values: a token's identity is its value
    stream = StreamBatches(tokens, batch_size, bptt)
    for epoch in range(2):
        got = list(stream)
        assert stream.epoch == epoch + 1 and stream.position == 0
        assert len(got) == len(stream)
        assert {b.inputs.shape for b in got} == {(batch_size, bptt)}  # one key for the run
        assert [b.continues for b in got] == [False] + [True] * (len(got) - 1)
        predicted = torch.cat([b.targets[b.mask] for b in got])
        assert sorted(predicted.tolist()) == tokens[1:].tolist()  # each exactly once
        assert stream.num_predictions == n - 1
        for batch in got:  # each real target is the token after its input
            assert torch.equal(batch.targets[batch.mask], batch.inputs[batch.mask] + 1)
    inputs = torch.cat([b.inputs for b in got], dim=1)  # (B, L): row b continues row b
    lengths = stream.column_lengths.tolist()
    starts = [0]
    for length in lengths[:-1]:
        starts.append(starts[-1] + length)
    for row, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        assert inputs[row, :length].tolist() == tokens[start : start + length].tolist()


def test_a_stream_resumes_mid_epoch_and_refuses_another_layout() -> None:
    stream = StreamBatches(torch.arange(50), batch_size=3, bptt=4)
    iterator = iter(stream)
    next(iterator), next(iterator)
    state = stream.state_dict()
    resumed = StreamBatches(torch.arange(50), batch_size=3, bptt=4)
    resumed.load_state_dict(state)
    rest = [b.inputs.tolist() for b in iterator]
    assert [b.inputs.tolist() for b in resumed] == rest
    with pytest.raises(NmtBucketError, match=r"bptt was 4, now 5"):
        StreamBatches(torch.arange(50), batch_size=3, bptt=5).load_state_dict(state)


def test_ranks_split_the_stream_columns_and_refuse_an_uneven_split() -> None:
    tokens = torch.arange(61)
    whole = StreamBatches(tokens, batch_size=4, bptt=5)
    shares = [StreamBatches(tokens, 4, 5, rank=r, world_size=2) for r in (0, 1)]
    assert all(len(share) == len(whole) for share in shares)
    for step, first, second in zip(whole, *shares, strict=True):
        assert torch.equal(torch.cat([first.inputs, second.inputs]), step.inputs)
        assert torch.equal(torch.cat([first.targets, second.targets]), step.targets)
        assert torch.equal(torch.cat([first.lengths, second.lengths]), step.lengths)
    assert shares[1].state_dict() == whole.state_dict()  # the same run, resumable alike
    with pytest.raises(NmtBucketError, match="multiple of the number of ranks"):
        StreamBatches(tokens, batch_size=3, bptt=5, rank=0, world_size=2)


def test_a_stream_too_short_for_its_columns_is_an_error() -> None:
    with pytest.raises(NmtBucketError, match=r"too short for 8 columns"):
        StreamBatches(torch.arange(7), batch_size=8, bptt=2)


def test_sentences_become_one_padded_batch_whose_mask_covers_every_real_token() -> None:
    eos = 0
    batch = collate_sentences([[5, 6, 7, eos], [8, eos], []], bucket_key=5, eos_id=eos)
    assert batch.bucket_key == 5
    assert batch.inputs.tolist()[:2] == [[eos, 5, 6, 7, eos], [eos, 8, eos, eos, eos]]
    assert batch.targets.tolist()[:2] == [[5, 6, 7, eos, eos], [8, eos, eos, eos, eos]]
    assert batch.mask.tolist() == [
        [True, True, True, True, False],
        [True, True, False, False, False],
        [False] * 5,  # a filler row counts nothing
    ]
    with pytest.raises(ValueError, match=r"does not fit key 3"):
        collate_sentences([[1, 2, 3, eos]], bucket_key=3, eos_id=eos)


def test_sentence_batches_take_the_smallest_1d_key_that_holds_each_sentence() -> None:
    eos = 0
    sentences = [[1] * n + [eos] for n in (2, 5, 3, 8, 1, 6, 4)]  # lengths 3 6 4 9 2 7 5
    lengths = sentence_lengths(sentences)
    assert lengths.shape == (7, 1)
    buckets = (4, 7, 9)
    sampler = BucketBatchSampler(lengths, buckets, {4: 2, 7: 2, 9: 2}, shuffle=False)
    batches = list(SentenceBatches(sentences, sampler, eos))
    seen = []
    for batch in batches:
        key = batch.bucket_key
        assert key in buckets
        for row in range(batch.batch_size):
            length = int(batch.lengths[row])
            if length:  # not a filler row
                assert length <= key
                seen.append(length)
                assert batch.targets[row, :length].tolist() == [1] * (length - 1) + [eos]
    assert sorted(seen) == sorted(int(n) for n in lengths[:, 0])  # every sentence, once
    assert sum(b.num_target_tokens for b in batches) == int(lengths.sum())
    one_per_batch = BucketBatchSampler(lengths, buckets, {4: 1, 7: 1, 9: 1}, shuffle=False)
    for batch in SentenceBatches(sentences, one_per_batch, eos):  # no leftovers to move on
        assert batch.bucket_key == min(k for k in buckets if k >= int(batch.lengths[0]))
