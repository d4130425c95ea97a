"""SentencePiece models: train one on corpus files (cached by a key over inputs and settings),
then encode lines to token ids."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from nmtbucket.data.corpus import read_lines
from nmtbucket.errors import NmtBucketError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class SentencePieceTokenizer:
    """A trained SentencePiece model with fixed special ids: pad 0, unk 1, bos 2, eos 3."""

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise NmtBucketError(f"sentencepiece model not found: {path}")
        self.model_path = path
        self._processor = spm.SentencePieceProcessor(model_file=str(path))

    @property
    def vocab_size(self) -> int:
        return int(self._processor.get_piece_size())

    def encode(self, lines: Sequence[str]) -> list[list[int]]:
        """Token ids of each line, without BOS or EOS."""
        return [list(ids) for ids in self._processor.encode(list(lines), out_type=int)]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._processor.decode(list(ids)))


def train_sentencepiece(
    input_files: Sequence[str | Path],
    cache_dir: str | Path,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
) -> SentencePieceTokenizer:
    """Train (or reuse) a model on the lines of ``input_files``.

    The model lands in ``cache_dir`` under a name hashed from the input bytes and the settings,
    so a rerun with the same inputs loads it instead of training again.
    """
    digest = hashlib.sha256(f"{vocab_size}:{model_type}:{character_coverage}".encode())
    for name in input_files:
        digest.update(Path(name).read_bytes())
    prefix = Path(cache_dir) / f"spm-{model_type}-{vocab_size}-{digest.hexdigest()[:16]}"
    model_path = prefix.with_suffix(".model")
    if model_path.is_file():
        return SentencePieceTokenizer(model_path)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    sentences = [line for name in input_files for line in read_lines(name) if line.strip()]
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            minloglevel=2,
        )
    except RuntimeError as err:  # sentencepiece reports bad settings this way
        files = ", ".join(str(f) for f in input_files)
        raise NmtBucketError(f"sentencepiece training on {files} failed: {err}") from None
    partial = model_path.with_suffix(".model.tmp")
    partial.write_bytes(model.getvalue())
    partial.replace(model_path)  # atomic: a crash never leaves a half-written model behind
    return SentencePieceTokenizer(model_path)
