"""The embedded numbers task: English number words, sampling, and the written splits."""

from __future__ import annotations

import random

import pytest

from nmtbucket.config import SyntheticConfig
from nmtbucket.data.corpus import read_lines
from nmtbucket.data.synthetic import generate_pairs, number_to_words, write_synthetic_task
from nmtbucket.errors import NmtBucketError


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (40, "forty"),
        (42, "forty-two"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (999, "nine hundred ninety-nine"),
        (1000, "one thousand"),
        (1001, "one thousand one"),
        (5201, "five thousand two hundred one"),
        (110000, "one hundred ten thousand"),
        (999999, "nine hundred ninety-nine thousand nine hundred ninety-nine"),
        (1_000_000, "one million"),
        (2_000_017, "two million seventeen"),
    ],
)
def test_number_to_words(n, words) -> None:
    assert number_to_words(n) == words


def test_number_to_words_range() -> None:
    with pytest.raises(ValueError, match="handles 0"):
        number_to_words(-1)


def test_pairs_are_deterministic_and_consistent() -> None:
    pairs = generate_pairs(200, 3, 999_999, random.Random(7))
    assert pairs == generate_pairs(200, 3, 999_999, random.Random(7))
    assert pairs != generate_pairs(200, 3, 999_999, random.Random(8))
    for src, tgt in pairs:
        numbers = [int(part.replace(",", "")) for part in src.split("; ")]
        assert 1 <= len(numbers) <= 3 and all(0 <= n <= 999_999 for n in numbers)
        assert src == "; ".join(f"{n:,}" for n in numbers)  # thousands separators
        assert tgt == "; ".join(number_to_words(n) for n in numbers)


def test_lengths_and_magnitudes_vary() -> None:
    pairs = generate_pairs(500, 3, 999_999, random.Random(1))
    digits = {len(part.replace(",", "")) for src, _ in pairs for part in src.split("; ")}
    assert digits == {1, 2, 3, 4, 5, 6}  # log-uniform magnitude: every size is common
    src_lengths = {len(src.split()) for src, _ in pairs}
    tgt_lengths = {len(tgt.split()) for _, tgt in pairs}
    assert len(src_lengths) == 3 and len(tgt_lengths) > 10
    assert len({len(tgt.split()) / len(src.split()) for src, tgt in pairs}) > 10


def test_write_task_splits_reuse_and_dedupe(tmp_path) -> None:
    config = SyntheticConfig(num_train=300, num_valid=40, num_test=30, max_value=9999)
    folder = write_synthetic_task(tmp_path, config)
    lines = {
        f"{split}.{side}": read_lines(folder / f"{split}.{side}")
        for split in ("train", "valid", "test")
        for side in ("src", "tgt")
    }
    assert [len(lines[f"{s}.src"]) for s in ("train", "valid", "test")] == [300, 40, 30]
    assert [len(lines[f"{s}.tgt"]) for s in ("train", "valid", "test")] == [300, 40, 30]
    train = set(lines["train.src"])
    assert not train & set(lines["valid.src"])
    assert not (train | set(lines["valid.src"])) & set(lines["test.src"])
    assert lines["valid.src"][:5] != lines["train.src"][:5]  # a seed of its own per split

    stamp = (folder / "train.src").stat().st_mtime_ns
    assert write_synthetic_task(tmp_path, config) == folder
    assert (folder / "train.src").stat().st_mtime_ns == stamp
    other = write_synthetic_task(tmp_path, SyntheticConfig(num_train=300, num_valid=40, seed=2))
    assert other != folder


def test_write_task_config_errors(tmp_path) -> None:
    with pytest.raises(NmtBucketError, match=r"data\.synthetic\.num_valid must be at least 1"):
        write_synthetic_task(tmp_path, SyntheticConfig(num_valid=0))
    with pytest.raises(NmtBucketError, match=r"data\.synthetic\.max_value must be in"):
        write_synthetic_task(tmp_path, SyntheticConfig(max_value=10**20))
    tiny = SyntheticConfig(num_train=200, num_valid=10, num_test=10, max_numbers=1, max_value=9)
    with pytest.raises(NmtBucketError, match=r"raise data\.synthetic\.max_value"):
        write_synthetic_task(tmp_path, tiny)
    assert list(tmp_path.iterdir()) == []  # a failed run leaves no folder behind
