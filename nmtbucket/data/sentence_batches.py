"""Sentence-mode language-model batches (the MXNet bucketing example): each line is an example,
bucketed by its length with 1-D keys, padded to its key and masked; no state crosses sentences."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nmtbucket.bucketing.keys import key_lengths
from nmtbucket.bucketing.sampler import BucketBatchSampler, IndexBatch
from nmtbucket.constants import FILLER
from nmtbucket.data.iterator import SampledBatches
from nmtbucket.data.lm_batch import LMBatch, collate_sentences


def sentence_lengths(sentences: Sequence[Sequence[int]]) -> torch.Tensor:
    """(N, 1) the length of each sentence, ``<eos>`` included: what bucket keys must cover."""
    return torch.tensor([[len(s)] for s in sentences], dtype=torch.int64).reshape(-1, 1)


class SentenceBatches(SampledBatches[LMBatch]):
    """:class:`LMBatch` es of ``sentences`` (word ids ending with ``<eos>``) in the order a
    :class:`BucketBatchSampler` over their :func:`sentence_lengths` gives; one epoch after
    another, resumable mid-epoch like the sampler."""

    def __init__(
        self, sentences: Sequence[Sequence[int]], sampler: BucketBatchSampler, eos_id: int
    ) -> None:
        super().__init__(sampler, len(sentences))
        self.sentences = sentences
        self.eos_id = eos_id

    def collate(self, step: IndexBatch) -> LMBatch:
        """A sentence longer than its key (the ``truncate`` policy) keeps its first ids."""
        (key,) = key_lengths(step.bucket_key)
        rows = [[] if i == FILLER else self.sentences[i][:key] for i in step.example_ids]
        return collate_sentences(rows, key, self.eos_id)
