"""nmtbucket: bucketing sequence-to-sequence training for PyTorch.

One static-shape module per bucket key, built by a user's ``sym_gen`` and sharing one set of
parameters; a bucket iterator that hands out batches carrying their key. See the README.
"""

from nmtbucket.bucketing import (
    BucketBatchSampler,
    BucketExecutor,
    BucketingModule,
    BucketIterator,
    BucketKey,
    BucketScheme,
    EagerExecutor,
    ExecutorFactory,
    IndexBatch,
    LengthKey,
    LengthPair,
    StepFn,
    SymGen,
    assign_buckets,
    build_bucket_scheme,
    define_batch_sizes,
    define_buckets,
    define_diagonal_buckets,
    define_explicit_buckets,
    define_grid_buckets,
)
from nmtbucket.config import (
    BucketingConfig,
    DataConfig,
    ModelConfig,
    SearchConfig,
    SyntheticConfig,
    TokenizerConfig,
    TrainConfig,
    TrainerConfig,
    TranslateConfig,
)
from nmtbucket.data import Batch, SequenceDataset, TokenSequences, collate
from nmtbucket.errors import BucketConfigError, NmtBucketError, SymGenError
from nmtbucket.models import build_sym_gen
from nmtbucket.pipeline import run_training
from nmtbucket.translator import Translation, Translator

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "BucketBatchSampler",
    "BucketConfigError",
    "BucketExecutor",
    "BucketIterator",
    "BucketKey",
    "BucketScheme",
    "BucketingConfig",
    "BucketingModule",
    "DataConfig",
    "EagerExecutor",
    "ExecutorFactory",
    "IndexBatch",
    "LengthKey",
    "LengthPair",
    "ModelConfig",
    "NmtBucketError",
    "SearchConfig",
    "SequenceDataset",
    "StepFn",
    "SymGen",
    "SymGenError",
    "SyntheticConfig",
    "TokenSequences",
    "TokenizerConfig",
    "TrainConfig",
    "TrainerConfig",
    "TranslateConfig",
    "Translation",
    "Translator",
    "assign_buckets",
    "build_bucket_scheme",
    "build_sym_gen",
    "collate",
    "define_batch_sizes",
    "define_buckets",
    "define_diagonal_buckets",
    "define_explicit_buckets",
    "define_grid_buckets",
    "run_training",
]
