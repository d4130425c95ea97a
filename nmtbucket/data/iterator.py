"""Batches from the steps of a :class:`~nmtbucket.bucketing.sampler.BucketBatchSampler`: the
generic base both tasks' bucketed batches share (epoch, position and resumable state are the
sampler's), and :class:`BucketIterator`, which pads parallel examples into :class:`Batch` es."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from nmtbucket.bucketing.keys import LengthKey
from nmtbucket.bucketing.sampler import BucketBatchSampler, IndexBatch
from nmtbucket.data.batch import Batch, collate
from nmtbucket.data.dataset import SequenceDataset
from nmtbucket.errors import NmtBucketError

BatchT = TypeVar("BatchT")


class SampledBatches(ABC, Generic[BatchT]):
    """Batches made from the steps of a :class:`BucketBatchSampler`, one epoch after another;
    the epoch, position and resumable state are the sampler's. Subclasses say how a step's
    rows become a batch."""

    def __init__(self, sampler: BucketBatchSampler, num_examples: int) -> None:
        if num_examples != len(sampler.assignment.bucket_index):
            raise NmtBucketError(
                f"the sampler was built for {len(sampler.assignment.bucket_index)} examples "
                f"but the data holds {num_examples}"
            )
        self.sampler = sampler

    @abstractmethod
    def collate(self, step: IndexBatch) -> BatchT:
        """The batch of one step: its rows padded to exactly its key."""

    @property
    def default_bucket_key(self) -> LengthKey:
        return self.sampler.default_bucket_key

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    @property
    def position(self) -> int:
        """Batches of the current epoch already yielded."""
        return self.sampler.position

    @property
    def step_shapes(self) -> dict[LengthKey, tuple[int, ...]]:
        return self.sampler.step_shapes

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[BatchT]:
        for step in self.sampler:
            yield self.collate(step)

    def example_batches(self) -> list[BatchT]:
        """One batch of every key that has one this epoch, the largest key first."""
        return [self.collate(step) for step in self.sampler.example_steps()]

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sampler.load_state_dict(state)


class BucketIterator(SampledBatches[Batch]):
    """Turns a :class:`BucketBatchSampler` over a dataset into padded :class:`Batch` es."""

    def __init__(self, dataset: SequenceDataset, sampler: BucketBatchSampler, pad_id: int) -> None:
        super().__init__(sampler, len(dataset))
        self.dataset = dataset
        self.pad_id = pad_id

    def collate(self, step: IndexBatch) -> Batch:
        return collate(self.dataset, step.example_ids, step.bucket_key, self.pad_id)
