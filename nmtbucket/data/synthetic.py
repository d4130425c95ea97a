"""The embedded demo task: numbers in digits with thousands separators ("5,201; 33") to English
words ("five thousand two hundred one; thirty-three"). The package generates it, so a run needs
no downloaded data. The separators make place value visible in the source, as written numbers
have it; without them a small model spends most of its time learning to count digits."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path

from nmtbucket.config import SyntheticConfig
from nmtbucket.console import progress_bar
from nmtbucket.errors import NmtBucketError

# fmt: off
ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# fmt: on
SCALES = ("", "thousand", "million", "billion", "trillion")
MAX_VALUE = 1000 ** len(SCALES) - 1
SPLITS = ("train", "valid", "test")
SEPARATOR = "; "  # between the numbers of one sentence, on both sides
_FORMAT_VERSION = 2  # part of the folder name: bump when the generated text changes


def number_to_words(n: int) -> str:
    """``n`` in English words, American style: no "and", hyphens in 21..99, groups of three
    digits named by scale with empty groups left out (1001 -> "one thousand one",
    110000 -> "one hundred ten thousand"); 0 is "zero"."""
    if not 0 <= n <= MAX_VALUE:
        raise ValueError(f"number_to_words handles 0 .. {MAX_VALUE}, got {n}")
    if n == 0:
        return "zero"
    words: list[str] = []
    for power in range(len(SCALES) - 1, -1, -1):
        group = n // 1000**power % 1000
        if group:
            words.append(_below_thousand(group))
            if SCALES[power]:
                words.append(SCALES[power])
    return " ".join(words)


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(f"{TENS[tens]}-{ONES[ones]}" if ones else TENS[tens])
    elif rest:
        words.append(ONES[rest])
    return " ".join(words)


def sample_number(rng: random.Random, max_value: int) -> int:
    """A number in 0 .. ``max_value`` whose digit count is uniform (a log-uniform magnitude), so
    short and long numbers are equally common."""
    digits = rng.randint(1, len(str(max_value)))
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, min(10**digits - 1, max_value))


def generate_pairs(
    count: int,
    max_numbers: int,
    max_value: int,
    rng: random.Random,
    exclude: Collection[str] = (),
) -> list[tuple[str, str]]:
    """``count`` (source, target) pairs of 1 .. ``max_numbers`` numbers joined by ``SEPARATOR``.

    Sources in ``exclude`` are drawn again, so held-out splits need not repeat training pairs.
    """
    pairs: list[tuple[str, str]] = []
    attempts = 0
    while len(pairs) < count:
        attempts += 1
        if attempts > 100 * count + 1000:
            raise NmtBucketError(
                f"could not draw {count} sentences unseen in the training split from numbers "
                f"up to {max_value}; raise data.synthetic.max_value or max_numbers, or lower "
                "num_valid/num_test"
            )
        numbers = [sample_number(rng, max_value) for _ in range(rng.randint(1, max_numbers))]
        src = SEPARATOR.join(f"{n:,}" for n in numbers)
        if src not in exclude:
            pairs.append((src, SEPARATOR.join(number_to_words(n) for n in numbers)))
    return pairs


def write_synthetic_task(
    out_dir: str | Path, config: SyntheticConfig, progress: bool = False
) -> Path:
    """Write ``{train,valid,test}.{src,tgt}`` into a folder under ``out_dir`` named by a hash of
    ``config``, and return the folder; when it already exists it is reused as it is.

    Each split has its own seed derived from ``config.seed``; valid and test sentences never
    repeat a training sentence, and test never repeats a valid one.
    """
    _check(config)
    fields = json.dumps({**asdict(config), "version": _FORMAT_VERSION}, sort_keys=True)
    folder = Path(out_dir) / f"numbers-{hashlib.sha256(fields.encode()).hexdigest()[:12]}"
    if folder.is_dir():
        return folder
    counts = {"train": config.num_train, "valid": config.num_valid, "test": config.num_test}
    splits: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    with progress_bar(sum(counts.values()), "numbers task", enabled=progress, unit="pairs") as bar:
        for split in SPLITS:
            rng = random.Random(f"{config.seed}:{split}")
            pairs = generate_pairs(counts[split], config.max_numbers, config.max_value, rng, seen)
            seen.update(src for src, _ in pairs)
            splits[split] = pairs
            bar.set_postfix(split=split, refresh=False)
            bar.update(len(pairs))
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    for split, pairs in splits.items():
        for side, index in (("src", 0), ("tgt", 1)):
            text = "".join(f"{pair[index]}\n" for pair in pairs)
            (partial / f"{split}.{side}").write_text(text, encoding="utf-8")
    try:
        os.rename(partial, folder)  # the folder appears complete or not at all
    except OSError:  # another process finished the same task first: keep its copy
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _check(config: SyntheticConfig) -> None:
    for name in ("num_train", "num_valid", "num_test", "max_numbers"):
        value = getattr(config, name)
        if value < 1:
            raise NmtBucketError(f"data.synthetic.{name} must be at least 1, got {value}")
    if not 0 <= config.max_value <= MAX_VALUE:
        raise NmtBucketError(
            f"data.synthetic.max_value must be in 0 .. {MAX_VALUE}, got {config.max_value}"
        )
