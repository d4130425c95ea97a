"""The bucketing core: keys, bucket maths, the iterator, the BucketingModule and its executors."""

from nmtbucket.bucketing.auto import define_buckets
from nmtbucket.bucketing.batching import (
    BucketAssignment,
    assign_buckets,
    define_batch_sizes,
    define_boundaries,
    define_diagonal_buckets,
    define_explicit_buckets,
    define_grid_buckets,
    sort_buckets,
)
from nmtbucket.bucketing.compiled import CompileFactory
from nmtbucket.bucketing.cuda_graph import CudaGraphFactory
from nmtbucket.bucketing.executor import BucketExecutor, EagerExecutor, ExecutorFactory, StepFn
from nmtbucket.bucketing.executor_choice import build_executor_factory
from nmtbucket.bucketing.iterator import BucketBatchSampler, BucketIterator, IndexBatch
from nmtbucket.bucketing.keys import BucketKey, LengthKey, LengthPair, key_lengths
from nmtbucket.bucketing.module import BucketingModule, SymGen
from nmtbucket.bucketing.scheme import BucketScheme, build_bucket_scheme

__all__ = [
    "BucketAssignment",
    "BucketBatchSampler",
    "BucketExecutor",
    "BucketIterator",
    "BucketKey",
    "BucketScheme",
    "BucketingModule",
    "CompileFactory",
    "CudaGraphFactory",
    "EagerExecutor",
    "ExecutorFactory",
    "IndexBatch",
    "LengthKey",
    "LengthPair",
    "StepFn",
    "SymGen",
    "assign_buckets",
    "build_bucket_scheme",
    "build_executor_factory",
    "define_batch_sizes",
    "define_boundaries",
    "define_buckets",
    "define_diagonal_buckets",
    "define_explicit_buckets",
    "define_grid_buckets",
    "key_lengths",
    "sort_buckets",
]
