"""Sentence-mode language-model batches (the MXNet bucketing example): each line is an example,
bucketed by its length with 1-D keys, padded to its key and masked; no state crosses sentences."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from nmtbucket.bucketing.iterator import BucketBatchSampler
from nmtbucket.bucketing.keys import key_lengths
from nmtbucket.data.batch import FILLER
from nmtbucket.data.lm_batch import LMBatch, collate_sentences
from nmtbucket.errors import NmtBucketError


def sentence_lengths(sentences: Sequence[Sequence[int]]) -> torch.Tensor:
    """(N, 1) the length of each sentence, ``<eos>`` included: what bucket keys must cover."""
    return torch.tensor([[len(s)] for s in sentences], dtype=torch.int64).reshape(-1, 1)


class SentenceBatches:
    """:class:`LMBatch` es of ``sentences`` (word ids ending with ``<eos>``) in the order a
    :class:`BucketBatchSampler` over their :func:`sentence_lengths` gives; one epoch after
    another, resumable mid-epoch like the sampler."""

    def __init__(
        self, sentences: Sequence[Sequence[int]], sampler: BucketBatchSampler, eos_id: int
    ) -> None:
        if len(sentences) != len(sampler.assignment.bucket_index):
            raise NmtBucketError(
                f"the sampler was built for {len(sampler.assignment.bucket_index)} sentences "
                f"but there are {len(sentences)}"
            )
        self.sentences = sentences
        self.sampler = sampler
        self.eos_id = eos_id

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    @property
    def position(self) -> int:
        return self.sampler.position

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[LMBatch]:
        for step in self.sampler:
            (key,) = key_lengths(step.bucket_key)
            rows = [[] if i == FILLER else self.sentences[i][:key] for i in step.example_ids]
            yield collate_sentences(rows, key, self.eos_id)

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sampler.load_state_dict(state)
