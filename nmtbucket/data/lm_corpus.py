"""A word-level language-model corpus read from ``{root}/{dir}/{split}.txt``: the vocabulary of
the training split, and every split as sentences of word ids (each ending with ``<eos>``) or as
one token stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nmtbucket.config import DataConfig
from nmtbucket.data.corpus import CorpusError, read_lines
from nmtbucket.data.prepare import corpus_folder
from nmtbucket.data.words import EOS_WORD, WordVocabulary
from nmtbucket.files import file_sha256

SPLITS = ("train", "valid", "test")

Sentences = list[list[int]]
"""Word ids per line, each line ending with the ``<eos>`` id."""


@dataclass(frozen=True)
class LanguageModelCorpus:
    """The vocabulary and the encoded ``train``, ``valid`` and ``test`` splits."""

    vocabulary: WordVocabulary
    splits: dict[str, Sentences]
    identity: dict[str, dict[str, str]]  # what a resumed run must find unchanged: the training
    # text, with its path and sha256

    @classmethod
    def load(cls, config: DataConfig, log: Callable[[str], None] = print) -> LanguageModelCorpus:
        """Read the three splits of ``config`` (``data.train`` etc. name the files without
        ``.txt``); the vocabulary comes from the training file alone."""
        folder = corpus_folder(config)
        names = {"train": config.train, "valid": config.valid, "test": config.test}
        files = {split: str(folder / f"{names[split]}.txt") for split in SPLITS}
        log(f"reading {', '.join(files.values())}")
        train_lines = read_lines(files["train"])
        if not any(line.split() for line in train_lines):
            raise CorpusError(f"{files['train']}: the training text has no words")
        vocabulary = WordVocabulary.build(train_lines)
        splits = {split: vocabulary.encode_file(files[split]) for split in SPLITS}
        for split in ("valid", "test"):
            if not splits[split]:
                raise CorpusError(
                    f"{files[split]}: the {split} split is empty, so nothing could be scored; "
                    f"give data.{split} a split with sentences"
                )
        train = {"path": files["train"], "sha256": file_sha256(files["train"])}
        return cls(vocabulary, splits, {"training text": train})

    @property
    def eos_id(self) -> int:
        return self.vocabulary.index[EOS_WORD]

    def stream(self, split: str) -> torch.Tensor:
        """(1 + tokens,) int64: ``<eos>`` (the end of the text before) and then every sentence,
        so that every token of the split, the first included, is predicted once."""
        flat = [self.eos_id, *(word for sentence in self.splits[split] for word in sentence)]
        return torch.tensor(flat, dtype=torch.int64)

    def num_tokens(self, split: str) -> int:
        """Words plus one ``<eos>`` per line: the tokens perplexity is computed over."""
        return sum(len(sentence) for sentence in self.splits[split])

    def describe(self) -> str:
        counts = ", ".join(
            f"{split} {len(self.splits[split])} lines / {self.num_tokens(split)} tokens"
            for split in SPLITS
        )
        return f"vocabulary {len(self.vocabulary)} words; {counts}"
