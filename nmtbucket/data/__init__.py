"""Corpus reading, tokenisation, token storage and padded batches."""

from nmtbucket.data.batch import FILLER, Batch, collate
from nmtbucket.data.dataset import SequenceDataset, TokenSequences

__all__ = ["FILLER", "Batch", "SequenceDataset", "TokenSequences", "collate"]
