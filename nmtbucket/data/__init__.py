"""Corpora, tokenisers, token storage, and the batches and batch iterators of both tasks."""

from nmtbucket.constants import FILLER
from nmtbucket.data.batch import Batch, collate
from nmtbucket.data.dataset import SequenceDataset, TokenSequences
from nmtbucket.data.iterator import BucketIterator, SampledBatches

__all__ = [
    "FILLER",
    "Batch",
    "BucketIterator",
    "SampledBatches",
    "SequenceDataset",
    "TokenSequences",
    "collate",
]
