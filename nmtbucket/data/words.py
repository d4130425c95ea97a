"""Word-level language-model corpora (Penn Treebank style): whitespace tokens per line, an
``<eos>`` after every line, and a vocabulary built from the training split alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nmtbucket.data.corpus import CorpusError, read_lines

EOS_WORD = "<eos>"
UNK_WORD = "<unk>"


@dataclass(frozen=True)
class WordVocabulary:
    """Words by id; ids run from 0 in order of training frequency (ties alphabetical)."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, lines: Sequence[str]) -> WordVocabulary:
        """The vocabulary of ``lines`` (training text), ``<eos>`` included."""
        counts = Counter(word for line in lines for word in line.split())
        counts[EOS_WORD] += len(lines)
        return cls(tuple(sorted(counts, key=lambda word: (-counts[word], word))))

    def __len__(self) -> int:
        return len(self.words)

    @cached_property
    def index(self) -> dict[str, int]:
        """Word -> id."""
        return {word: i for i, word in enumerate(self.words)}

    def encode_file(self, path: str | Path) -> list[list[int]]:
        """Each line of ``path`` as word ids followed by ``<eos>``. A word outside the vocabulary
        becomes ``<unk>`` when the vocabulary has it, and is an error naming file and line
        otherwise."""
        index = self.index
        unk = index.get(UNK_WORD)
        eos = index[EOS_WORD]
        encoded = []
        for number, line in enumerate(read_lines(path), start=1):
            ids = []
            for word in line.split():
                word_id = index.get(word, unk)
                if word_id is None:
                    raise CorpusError(
                        f"{path}:{number}: the word {word!r} is not in the training vocabulary, "
                        f"which has no {UNK_WORD} to map it to; map rare words to {UNK_WORD} in "
                        "the training text"
                    )
                ids.append(word_id)
            encoded.append([*ids, eos])
        return encoded
