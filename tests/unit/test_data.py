"""Corpus reading, token storage and batches."""

from __future__ import annotations

import pytest
import torch

from nmtbucket import LengthPair, SequenceDataset, TokenSequences, collate
from nmtbucket.constants import FILLER
from nmtbucket.data.corpus import CorpusError, read_lines


def test_read_lines_strips_endings(tmp_path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("één\r\ntwo\n\nthree".encode())
    assert read_lines(path) == ["één", "two", "", "three"]


def test_read_lines_names_file_and_line_of_invalid_utf8(tmp_path) -> None:
    path = tmp_path / "bad.de"
    path.write_bytes(b"gut\nschlecht \xff\n")
    with pytest.raises(CorpusError, match=r"bad\.de:2: invalid UTF-8 at byte 9"):
        read_lines(path)


def test_read_lines_missing_file(tmp_path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        read_lines(tmp_path / "nope.en")


def test_token_sequences_round_trip() -> None:
    seqs = [[5, 6, 7], [], [8]]
    stored = TokenSequences.from_lists(seqs)
    assert len(stored) == 3
    assert stored.lengths.tolist() == [3, 0, 1]
    assert [stored[i].tolist() for i in range(3)] == seqs


def test_dataset_rejects_misaligned_streams() -> None:
    with pytest.raises(ValueError, match="different numbers of examples"):
        SequenceDataset(TokenSequences.from_lists([[1]]), TokenSequences.from_lists([[1], [2]]))


def test_collate_pads_truncates_and_fills() -> None:
    data = SequenceDataset(
        TokenSequences.from_lists([[4, 5, 6, 7], [8]]), TokenSequences.from_lists([[9], [10, 11]])
    )
    batch = collate(data, [1, 0, FILLER], LengthPair(3, 2), pad_id=0)
    assert batch.src.tolist() == [[8, 0, 0], [4, 5, 6], [0, 0, 0]]  # row 2 truncated to S=3
    assert batch.tgt.tolist() == [[10, 11], [9, 0], [0, 0]]
    assert batch.src_lengths.tolist() == [1, 3, 0]
    assert batch.num_real_tokens == 1 + 3 + 2 + 1
    assert batch.shape == (3, 3, 2)
    assert batch.num_padded_tokens == 15
    wider = batch.pad_to(LengthPair(5, 4), pad_id=0)
    assert wider.src.shape == (3, 5) and wider.tgt.shape == (3, 4)
    assert wider.num_real_tokens == batch.num_real_tokens
    with pytest.raises(ValueError, match="cannot pad"):
        batch.pad_to(LengthPair(2, 4), pad_id=0)
    assert torch.equal(batch.to("cpu").src, batch.src)


def test_sentencepiece_is_trained_once_and_cached(tmp_path) -> None:
    from nmtbucket.constants import EOS_ID, PAD_ID
    from nmtbucket.data.tokenizer import train_sentencepiece

    corpus = tmp_path / "train.txt"
    corpus.write_text("".join(f"the cat sat on mat number {i}\n" for i in range(200)))
    first = train_sentencepiece([corpus], tmp_path / "cache", vocab_size=40)
    mtime = first.model_path.stat().st_mtime_ns
    again = train_sentencepiece([corpus], tmp_path / "cache", vocab_size=40)
    assert again.model_path == first.model_path
    assert again.model_path.stat().st_mtime_ns == mtime
    ids = first.encode(["the cat sat"])[0]
    assert ids and PAD_ID not in ids and EOS_ID not in ids
    assert first.decode(ids) == "the cat sat"
    other = train_sentencepiece([corpus], tmp_path / "cache", vocab_size=41)
    assert other.model_path != first.model_path


def test_sentencepiece_bad_vocab_size_is_a_clear_error(tmp_path) -> None:
    from nmtbucket.data.tokenizer import train_sentencepiece
    from nmtbucket.errors import NmtBucketError

    corpus = tmp_path / "train.txt"
    corpus.write_text("a b c\n" * 20)
    with pytest.raises(NmtBucketError, match=r"train\.txt failed: .*Vocabulary size too high"):
        train_sentencepiece([corpus], tmp_path / "cache", vocab_size=5000)
