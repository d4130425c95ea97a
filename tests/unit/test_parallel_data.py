"""Parallel corpora: reading, filtering, sentencepiece settings, and prepare_data with its cache."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import sentencepiece as spm
import torch

from nmtbucket.config import DataConfig, TokenizerConfig
from nmtbucket.constants import EOS_ID
from nmtbucket.data.corpus import CorpusError
from nmtbucket.data.parallel import filter_training_pairs, read_parallel
from nmtbucket.data.prepare import PreparedData, prepare_data
from nmtbucket.data.tokenizer import SentencePieceTokenizer, train_sentencepiece
from nmtbucket.errors import NmtBucketError

# fmt: off
WORDS_EN = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "big", "small", "red", "house"]
WORDS_DE = [
    "die", "katze", "hund", "sass", "lief", "auf", "einer", "matte", "gross", "klein", "rot",
    "haus",
]
# fmt: on


def _sentence(words: list[str], i: int) -> str:
    return " ".join(words[(i * k + k * k) % len(words)] for k in range(1, 3 + i % 5))


def write_corpus(folder: Path, train_lines: int = 120) -> Path:
    """A tiny en-de corpus: train has an empty pair; valid and test have an empty line each."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": train_lines, "valid": 6, "test": 5}
    for split, size in sizes.items():
        en = [_sentence(WORDS_EN, i) for i in range(size)]
        de = [_sentence(WORDS_DE, i) for i in range(size)]
        en[2], de[2] = "", ""
        (folder / f"{split}.en").write_text("".join(f"{line}\n" for line in en))
        (folder / f"{split}.de").write_text("".join(f"{line}\n" for line in de))
    return folder


def data_config(tmp_path: Path, **tokenizer: Any) -> DataConfig:
    write_corpus(tmp_path / "data" / "toy")
    settings: dict[str, Any] = {"vocab_size": 40, **tokenizer}
    return DataConfig(
        root=str(tmp_path / "data"),
        dir="toy",
        src_lang="en",
        tgt_lang="de",
        cache_dir=str(tmp_path / "cache"),
        tokenizer=TokenizerConfig(**settings),
    )


def quiet_prepare(config: DataConfig) -> tuple[PreparedData, list[str]]:
    messages: list[str] = []
    return prepare_data(config, progress=False, log=messages.append), messages


# --- reading ----------------------------------------------------------------------------------


def test_read_parallel_mismatch_names_both_files_and_counts(tmp_path) -> None:
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\n")
    with pytest.raises(CorpusError, match=r"a\.en has 3 lines but .*a\.de has 2"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")


def test_read_parallel_invalid_utf8_names_file_and_line(tmp_path) -> None:
    (tmp_path / "a.en").write_text("one\ntwo\n")
    (tmp_path / "a.de").write_bytes(b"eins\nzw\xffei\n")
    with pytest.raises(CorpusError, match=r"a\.de:2: invalid UTF-8"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")


def test_read_parallel_missing_file(tmp_path) -> None:
    (tmp_path / "a.en").write_text("one\n")
    with pytest.raises(CorpusError, match=r"not found: .*a\.de"):
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")


def test_missing_root_says_what_to_set(tmp_path) -> None:
    config = DataConfig(root=None, dir="toy", cache_dir=str(tmp_path))
    with pytest.raises(NmtBucketError, match=r"set NMTBUCKET_DATA_ROOT or pass data\.root="):
        prepare_data(config, progress=False, log=lambda _: None)


def test_missing_root_folder_is_named(tmp_path) -> None:
    config = DataConfig(root=str(tmp_path / "nowhere"), dir="toy", cache_dir=str(tmp_path))
    with pytest.raises(NmtBucketError, match=r"data root .*nowhere does not exist"):
        prepare_data(config, progress=False, log=lambda _: None)


def test_unknown_task_is_named(tmp_path) -> None:
    config = DataConfig(task="parralel", cache_dir=str(tmp_path))
    with pytest.raises(NmtBucketError, match=r"data\.task must be one of .*'parralel'"):
        prepare_data(config, progress=False, log=lambda _: None)


# --- filtering --------------------------------------------------------------------------------


def test_filter_counts_each_pair_once_under_its_first_reason() -> None:
    # ok, empty, empty (and ratio), too long (and ratio 3), too long, ratio 3.33, ratio 3.33,
    # too long, ratio exactly 3 (kept)
    src = torch.tensor([5, 1, 1, 12, 11, 3, 10, 4, 3])
    tgt = torch.tensor([6, 4, 1, 4, 5, 10, 3, 12, 9])
    kept, stats = filter_training_pairs(src, tgt, 10, 11, max_length_ratio=3.0)
    assert kept.tolist() == [0, 8]
    assert kept.dtype == torch.int64
    counts = (stats.total, stats.kept, stats.empty, stats.too_long, stats.bad_ratio)
    assert counts == (9, 2, 2, 3, 2)
    assert stats.summary() == (
        "kept 2 of 9 training pairs; skipped 2 with an empty side, 3 longer than 10/11 tokens "
        "(data.max_src_len/max_tgt_len), 2 with a length ratio above 3 (data.max_length_ratio)"
    )


def test_filter_summary_without_skips() -> None:
    _, stats = filter_training_pairs(torch.tensor([3]), torch.tensor([4]), 10, 10, 2.0)
    assert stats.summary() == "kept 1 of 1 training pairs"


# --- prepare_data -----------------------------------------------------------------------------


def test_prepare_keeps_every_held_out_line_and_appends_eos(tmp_path) -> None:
    data, messages = quiet_prepare(data_config(tmp_path))
    assert len(data.valid.dataset) == 6 and len(data.test.dataset) == 5
    assert data.valid.src_lines[2] == "" and data.valid.ref_lines[2] == ""
    assert data.valid.dataset.streams[0][2].tolist() == [EOS_ID]  # empty line: just EOS
    assert (data.valid.name, data.test.name) == ("valid", "test")
    assert data.filter_stats.empty == 1 and len(data.train) == 119  # the empty training pair
    for stream in data.train.streams:
        assert all(stream[i][-1] == EOS_ID and EOS_ID not in stream[i][:-1] for i in range(5))
    first = data.train.streams[1][0].tolist()
    assert data.tgt_tokenizer.decode(first[:-1]) == _sentence(WORDS_DE, 0)
    assert "kept 119 of 120 training pairs; skipped 1 with an empty side" in messages
    assert data.describe().startswith("train 119 pairs (")
    assert "valid 6, test 5; joint vocabulary of 40" in data.describe()


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch) -> None:
    config = data_config(tmp_path)
    first, messages = quiet_prepare(config)
    assert any(m.startswith("encoded data cached in") for m in messages)

    def no_encoding(self, lines):
        raise AssertionError("encoded again although the cache matches")

    monkeypatch.setattr(SentencePieceTokenizer, "encode", no_encoding)
    again, messages = quiet_prepare(config)
    assert any(m.startswith("reusing encoded data from") for m in messages)
    assert torch.equal(again.train.lengths, first.train.lengths)
    monkeypatch.undo()

    config.max_src_len = 4  # a filter setting changes: encode again
    fewer, messages = quiet_prepare(config)
    assert any(m.startswith("encoded data cached in") for m in messages)
    assert len(fewer.train) < len(first.train)

    valid_en = tmp_path / "data" / "toy" / "valid.en"  # a corpus file changes: encode again
    valid_en.write_text(valid_en.read_text().replace("the", "a"))
    _, messages = quiet_prepare(config)
    assert any(m.startswith("encoded data cached in") for m in messages)


def test_joint_and_separate_vocabularies(tmp_path) -> None:
    joint, _ = quiet_prepare(data_config(tmp_path / "j", joint=True))
    assert joint.src_tokenizer is joint.tgt_tokenizer
    separate, messages = quiet_prepare(data_config(tmp_path / "s", joint=False, vocab_size=30))
    assert separate.src_tokenizer.model_path != separate.tgt_tokenizer.model_path
    assert separate.src_tokenizer.vocab_size == separate.tgt_tokenizer.vocab_size == 30
    assert sum(m.startswith("training a unigram") for m in messages) == 2
    assert "vocabularies of 30 (source) and 30 (target)" in separate.describe()


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_model_types_train_and_round_trip(tmp_path, model_type) -> None:
    data, messages = quiet_prepare(data_config(tmp_path, model_type=model_type))
    assert data.src_tokenizer.model_path.name.startswith(f"spm-{model_type}-40-")
    ids = data.src_tokenizer.encode(["the big red house"])[0]
    assert data.src_tokenizer.decode(ids) == "the big red house"
    assert any(m.startswith(f"training a {model_type} sentencepiece model") for m in messages)


def test_bad_model_type_names_the_setting(tmp_path) -> None:
    with pytest.raises(NmtBucketError, match=r"data\.tokenizer\.model_type .*'wordpiece'"):
        quiet_prepare(data_config(tmp_path, model_type="wordpiece"))


def test_too_large_vocabulary_suggests_a_smaller_one(tmp_path) -> None:
    with pytest.raises(NmtBucketError, match=r"smaller data\.tokenizer\.vocab_size \(at most \d+"):
        quiet_prepare(data_config(tmp_path, vocab_size=5000))


def test_given_model_path_is_used_for_both_sides(tmp_path) -> None:
    corpus = write_corpus(tmp_path / "elsewhere")
    model = train_sentencepiece([corpus / "train.en"], tmp_path / "models", vocab_size=30)
    data, messages = quiet_prepare(data_config(tmp_path, src_model=str(model.model_path)))
    assert data.src_tokenizer is data.tgt_tokenizer
    assert data.src_tokenizer.model_path == model.model_path
    assert not any(m.startswith("training") for m in messages)


def test_given_model_errors(tmp_path) -> None:
    with pytest.raises(NmtBucketError, match=r"data\.tokenizer\.tgt_model=.*nope\.model does not"):
        quiet_prepare(data_config(tmp_path, joint=False, tgt_model=str(tmp_path / "nope.model")))
    with pytest.raises(NmtBucketError, match=r"joint=true one model serves both sides"):
        quiet_prepare(data_config(tmp_path, tgt_model="b.model"))


def test_model_with_other_special_ids_is_refused(tmp_path) -> None:
    model = io.BytesIO()
    lines = [_sentence(WORDS_EN, i) for i in range(50)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=30, minloglevel=2
    )  # sentencepiece's defaults: unk 0, bos 1, eos 2, no pad
    path = tmp_path / "foreign.model"
    path.write_bytes(model.getvalue())
    with pytest.raises(NmtBucketError, match=r"needs .*'pad': 0.*--pad_id=0"):
        SentencePieceTokenizer(path)


def test_split_digits_gives_one_piece_per_digit(tmp_path) -> None:
    corpus = tmp_path / "numbers.txt"
    lines = [
        f"{WORDS_EN[i % 12]} {WORDS_EN[i * 5 % 12]} 2024 {WORDS_EN[i * 7 % 12]} 1999"
        for i in range(300)
    ]
    corpus.write_text("".join(f"{line}\n" for line in lines))
    merged = train_sentencepiece([corpus], tmp_path / "c", vocab_size=28)
    split = train_sentencepiece([corpus], tmp_path / "c", vocab_size=28, split_digits=True)
    assert split.model_path != merged.model_path  # the setting is part of the cache key

    def digit_pieces(tokenizer: SentencePieceTokenizer) -> list[str]:
        pieces = [tokenizer.piece(i) for i in tokenizer.encode(["2024 1999"])[0]]
        return [p.lstrip("▁") for p in pieces if p != "▁"]

    assert "1999" in digit_pieces(merged)  # frequent enough to become one piece
    assert digit_pieces(split) == list("20241999")


def test_too_small_vocabulary_suggests_a_larger_one(tmp_path) -> None:
    corpus = tmp_path / "letters.txt"
    corpus.write_text("abcdefghijklmnopqrstuvwxyz\n" * 10)
    with pytest.raises(NmtBucketError, match=r"larger data\.tokenizer\.vocab_size \(at least 3\d"):
        train_sentencepiece([corpus], tmp_path / "c", vocab_size=20)
