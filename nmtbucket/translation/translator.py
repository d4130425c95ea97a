"""The Python translation API: ``Translator.from_checkpoint(run_dir).translate(lines)``.

Lines are tokenised, empty ones answered without decoding, over-long ones truncated to the
largest source bucket (with a warning, never dropped), the rest decoded by beam search in
source-length buckets, and the detokenised results returned in input order.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from nmtbucket.config import SearchConfig, check_search
from nmtbucket.console import progress_bar
from nmtbucket.constants import EOS_ID
from nmtbucket.data.tokenizer import SentencePieceTokenizer
from nmtbucket.device import resolve_device
from nmtbucket.errors import NmtBucketError
from nmtbucket.models.base import Seq2Seq
from nmtbucket.search.beam_pieces import check_beam_arguments
from nmtbucket.search.decoding import (
    SearchFn,
    beam_search_fn,
    decode_in_buckets,
    define_source_buckets,
    step_decoder,
)
from nmtbucket.translation.run_folder import RunFolder

log = logging.getLogger(__name__)

TRUNCATION_WARNINGS = 10
"""Truncated lines warned about one by one per call; the rest are only counted."""


@dataclass(frozen=True)
class Translation:
    """One hypothesis for one input line."""

    text: str  # detokenised
    score: float  # log-probability / length penalty: what ranks hypotheses (0 for empty input)
    log_prob: float  # sum of token log-probabilities, EOS included


class Translator:
    """Translates lines with one model, its tokenizers and its source-length buckets."""

    def __init__(
        self,
        core: Seq2Seq[Any],
        src_tokenizer: SentencePieceTokenizer,
        tgt_tokenizer: SentencePieceTokenizer,
        src_buckets: Sequence[int],
        search: SearchConfig | None = None,
        device: str | torch.device = "cpu",
        progress: bool = False,
    ) -> None:
        self.search = search or SearchConfig(beam_size=5)
        check_search(self.search)
        if not src_buckets or min(src_buckets) < 1:
            raise NmtBucketError(f"source buckets must be positive lengths, got {src_buckets}")
        self.device = (
            device if isinstance(device, torch.device) else resolve_device(device, "device")
        )
        self.core = core.to(self.device).eval()
        self.decoder = step_decoder(self.core, self.search, self.device)  # kept: its graphs
        self.src_tokenizer = src_tokenizer
        self.tgt_tokenizer = tgt_tokenizer
        self.src_buckets = sorted(set(src_buckets))
        self.progress = progress
        self.truncated_lines = 0  # lines the last call had to truncate

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        weights: str = "best",
        average: int = 1,
        search: SearchConfig | None = None,
        device: str | torch.device = "auto",
        progress: bool = False,
    ) -> Translator:
        """The translator of the run directory ``path``; ``weights`` and ``average`` choose the
        checkpoint(s) as :meth:`RunFolder.weight_paths` describes."""
        folder = RunFolder.open(path)
        core = folder.build_model(weights, average)
        src_tokenizer, tgt_tokenizer = folder.tokenizers()
        buckets = define_source_buckets(folder.buckets)
        return cls(core, src_tokenizer, tgt_tokenizer, buckets, search, device, progress)

    @property
    def max_src_len(self) -> int:
        """Source tokens (EOS included) of the largest bucket; longer inputs are truncated."""
        return self.src_buckets[-1]

    def translate(self, lines: Sequence[str]) -> list[str]:
        """The best translation of each line, in order; an empty line gives an empty one."""
        return [hypotheses[0].text for hypotheses in self.translate_nbest(lines, nbest=1)]

    def translate_nbest(
        self, lines: Sequence[str], nbest: int = 1, first_line: int = 1
    ) -> list[list[Translation]]:
        """The ``nbest`` best translations of each line, best first; warnings number the lines
        from ``first_line``."""
        check_beam_arguments(self.search.beam_size, nbest)
        sources = self.encode(lines, first_line)
        todo = [i for i, tokens in enumerate(sources) if tokens]
        search_fn = beam_search_fn(self.decoder, self.search, nbest)
        found = translate_sources(
            [sources[i] for i in todo], self, search_fn, "translate", self.progress
        )
        results = [[Translation("", 0.0, 0.0)] * nbest for _ in lines]
        for index, translations in zip(todo, found, strict=True):
            results[index] = translations
        return results

    def translate_chunks(
        self, lines: Iterable[str], nbest: int = 1, buffer_lines: int = 10_000
    ) -> Iterator[tuple[list[str], list[list[Translation]]]]:
        """Translations of a stream of lines of any length, ``buffer_lines`` lines at a time:
        yields each chunk of lines with its ``nbest`` translations per line, in input order,
        as soon as the chunk is done. Memory holds one chunk; within it, lines are sorted by
        length into the source buckets, so a larger chunk pads less."""
        if buffer_lines < 1:
            raise NmtBucketError(f"buffer_lines must be at least 1, got {buffer_lines}")
        remaining, first_line = iter(lines), 1
        while chunk := list(itertools.islice(remaining, buffer_lines)):
            yield chunk, self.translate_nbest(chunk, nbest, first_line)
            first_line += len(chunk)

    def encode(self, lines: Sequence[str], first_line: int = 1) -> list[list[int]]:
        """Token ids with EOS, truncated to the largest bucket; [] for a line with no tokens.
        Warnings number the lines from ``first_line``."""
        self.truncated_lines = 0
        sources: list[list[int]] = []
        for number, ids in enumerate(self.src_tokenizer.encode(lines), start=first_line):
            if not ids:
                sources.append([])
                continue
            if len(ids) + 1 > self.max_src_len:
                self.truncated_lines += 1
                if self.truncated_lines <= TRUNCATION_WARNINGS:
                    log.warning(
                        "line %d has %d tokens; truncated to the first %d (the largest source "
                        "bucket holds %d with the end-of-sentence token)%s",
                        number,
                        len(ids),
                        self.max_src_len - 1,
                        self.max_src_len,
                        "; further truncated lines are only counted"
                        if self.truncated_lines == TRUNCATION_WARNINGS
                        else "",
                    )
                ids = ids[: self.max_src_len - 1]
            sources.append([*ids, EOS_ID])
        return sources


class DecodingSetup(Protocol):
    """Where and how sources are decoded: what :class:`Translator` and the held-out evaluator
    both have."""

    @property
    def src_buckets(self) -> Sequence[int]: ...

    @property
    def search(self) -> SearchConfig: ...

    @property
    def tgt_tokenizer(self) -> SentencePieceTokenizer: ...

    @property
    def device(self) -> torch.device: ...


def translate_sources(
    sources: Sequence[Sequence[int] | torch.Tensor],
    setup: DecodingSetup,
    search_fn: SearchFn,
    label: str,
    show_progress: bool,
) -> list[list[Translation]]:
    """Each source's hypotheses (token ids with EOS, 1 .. the largest bucket long), decoded by
    ``search_fn`` in ``setup``'s source-length buckets and detokenised, in input order, with a
    progress bar named ``label``: what :class:`Translator` and the held-out evaluator both
    run."""
    with progress_bar(len(sources), label, enabled=show_progress, unit="sent") as bar:
        found = decode_in_buckets(
            sources, setup.src_buckets, setup.search, search_fn, setup.device, bar
        )
    tgt_tokenizer = setup.tgt_tokenizer
    return [
        [Translation(tgt_tokenizer.decode(h.tokens), h.score, h.log_prob) for h in hypotheses]
        for hypotheses in found
    ]
