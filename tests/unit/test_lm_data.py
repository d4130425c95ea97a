"""Word-level LM data: the training vocabulary, <eos> per line, and stream batches that predict
every token of every column once per epoch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nmtbucket.data.corpus import CorpusError
from nmtbucket.data.lm_batch import collate_sentences
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
    ("n", "batch_size", "bptt", "drop_last", "batches", "last_len"),
    [
        (21, 2, 3, True, 3, 3),  # columns of 10: 9 predicted each, 3 chunks of 3
        (23, 2, 4, True, 2, 4),  # columns of 11: 10 predicted, the 2 left over are dropped
        (23, 2, 4, False, 3, 2),  # ... or come as a shorter last batch
        (7, 1, 10, False, 1, 6),
    ],
)
def test_stream_batches_predict_every_token_after_each_column_start_once(
    n: int, batch_size: int, bptt: int, drop_last: bool, batches: int, last_len: int
) -> None:
    tokens = torch.arange(n)
    stream = StreamBatches(tokens, batch_size, bptt, drop_last)
    got = list(stream)
    assert len(got) == len(stream) == batches
    assert got[-1].inputs.shape == (batch_size, last_len) and got[-1].bucket_key == last_len
    assert all(bool(b.mask.all()) for b in got)  # no padding in a stream
    assert all(b.inputs.shape == (batch_size, bptt) for b in got[:-1])
    columns = tokens[: batch_size * (n // batch_size)].view(batch_size, -1)
    for batch in got:
        assert torch.equal(batch.targets[:, :-1], batch.inputs[:, 1:])  # shifted by one
    predicted = torch.cat([b.targets for b in got], dim=1)  # (B, predicted per column)
    if drop_last:
        assert torch.equal(predicted, columns[:, 1 : 1 + predicted.shape[1]])
        assert columns.shape[1] - 1 - predicted.shape[1] < bptt  # only a short tail is dropped
    else:
        assert torch.equal(predicted, columns[:, 1:])  # every token after each column start
    inputs = torch.cat([b.inputs for b in got], dim=1)
    assert torch.equal(inputs, columns[:, : inputs.shape[1]])  # row b continues row b


def test_a_stream_too_short_for_its_columns_is_an_error() -> None:
    with pytest.raises(NmtBucketError, match=r"too short for 4 columns"):
        StreamBatches(torch.arange(7), batch_size=4, bptt=2)


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
