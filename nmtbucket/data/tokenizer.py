"""SentencePiece models: train one on corpus files (cached by a key over inputs and settings),
then encode lines to token ids."""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import sentencepiece as spm

from nmtbucket.config import CHOICES
from nmtbucket.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmtbucket.data.corpus import CorpusError, read_lines
from nmtbucket.errors import NmtBucketError
from nmtbucket.files import atomic_write_bytes

MODEL_TYPES = CHOICES["data.tokenizer.model_type"]
_SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID}
_CACHE_VERSION = 2  # bump when the training settings below change, so old models are not reused


class SentencePieceTokenizer:
    """A trained SentencePiece model with fixed special ids: pad 0, unk 1, bos 2, eos 3."""

    def __init__(self, model_path: str | Path, num_threads: int | None = None) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise NmtBucketError(f"sentencepiece model not found: {path}")
        self.model_path = path
        self.num_threads = num_threads or os.cpu_count() or 1
        try:
            self._processor = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as err:
            raise NmtBucketError(f"{path} is not a sentencepiece model: {err}") from None
        self._check_special_ids()

    def _check_special_ids(self) -> None:
        processor = self._processor
        found = {
            "pad": processor.pad_id(),
            "unk": processor.unk_id(),
            "bos": processor.bos_id(),
            "eos": processor.eos_id(),
        }
        if found != _SPECIAL_IDS:
            raise NmtBucketError(
                f"sentencepiece model {self.model_path} has special ids {found}, but nmtbucket "
                f"needs {_SPECIAL_IDS}; train it with --pad_id=0 --unk_id=1 --bos_id=2 "
                "--eos_id=3, or let nmtbucket train one (leave data.tokenizer.*_model unset)"
            )

    @property
    def vocab_size(self) -> int:
        return int(self._processor.get_piece_size())

    def encode(self, lines: Sequence[str]) -> list[list[int]]:
        """Token ids of each line, without BOS or EOS (lines are encoded in parallel)."""
        encoded = self._processor.encode(list(lines), out_type=int, num_threads=self.num_threads)
        return [list(ids) for ids in encoded]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._processor.decode(list(ids)))

    def piece(self, token_id: int) -> str:
        """The vocabulary entry of ``token_id`` (``<pad>``, ``▁the``, ...), for debugging output."""
        if not 0 <= token_id < self.vocab_size:
            raise IndexError(f"token id {token_id} outside the vocabulary of {self.vocab_size}")
        return str(self._processor.id_to_piece(token_id))


def train_sentencepiece(
    input_files: Sequence[str | Path],
    cache_dir: str | Path,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    split_digits: bool = False,
    log: Callable[[str], None] | None = None,
) -> SentencePieceTokenizer:
    """Train (or reuse) a model on the non-empty lines of ``input_files``.

    The model lands in ``cache_dir`` under a name hashed from the input bytes and the settings,
    so a rerun with the same inputs loads it instead of training again. ``log`` hears about a
    training run (not about a reused model).
    """
    if model_type not in MODEL_TYPES:
        raise NmtBucketError(
            f"data.tokenizer.model_type must be one of {MODEL_TYPES}, got {model_type!r}"
        )
    settings = f"{_CACHE_VERSION}:{vocab_size}:{model_type}:{character_coverage}:{split_digits}"
    digest = hashlib.sha256(settings.encode())
    for name in input_files:
        if not Path(name).is_file():
            raise CorpusError(f"corpus file not found: {name}")
        data = Path(name).read_bytes()
        digest.update(f"{len(data)}:".encode())  # lengths keep file boundaries in the hash
        digest.update(data)
    prefix = Path(cache_dir) / f"spm-{model_type}-{vocab_size}-{digest.hexdigest()[:16]}"
    model_path = prefix.with_suffix(".model")
    if model_path.is_file():
        try:
            return SentencePieceTokenizer(model_path)
        except NmtBucketError as err:  # torn: train it again (the same inputs, the same model)
            if log is not None:
                log(f"cannot use the cached {model_path} ({err}); training it again")
    files = ", ".join(str(f) for f in input_files)
    if log is not None:
        log(f"training a {model_type} sentencepiece model of {vocab_size} pieces on {files}")
    sentences = [line for name in input_files for line in read_lines(name) if line.strip()]
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            split_digits=split_digits,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            minloglevel=2,
        )
    except (RuntimeError, ValueError) as err:  # sentencepiece reports bad settings this way
        raise NmtBucketError(f"sentencepiece training on {files} failed: {_explain(err)}") from None
    atomic_write_bytes(model_path, lambda file: file.write(model.getvalue()))
    return SentencePieceTokenizer(model_path)


def _explain(err: Exception) -> str:
    """sentencepiece's message without its source location, plus what to change in the config."""
    message = re.sub(r"^[A-Z_]+: src/\S+ \[.*?\] ", "", str(err))
    too_high = re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", message)
    if too_high:
        return (
            f"{message} The training text has too few distinct pieces for {too_high[1]}: "
            f"set a smaller data.tokenizer.vocab_size (at most {too_high[2]})."
        )
    too_low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_low:
        return (
            f"{message} Set a larger data.tokenizer.vocab_size (at least {too_low[2]}) or a "
            "lower data.tokenizer.character_coverage."
        )
    return message
