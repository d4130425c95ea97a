"""nmtbucket: bucketing sequence-to-sequence training for PyTorch.

One static-shape module per bucket key, built by a user's ``sym_gen`` and sharing one set of
parameters; a bucket iterator that hands out batches carrying their key. See the README.
"""

from nmtbucket.bucketing import (
    BucketBatchSampler,
    BucketingModule,
    BucketKey,
    BucketScheme,
    IndexBatch,
    LengthKey,
    LengthPair,
    SymGen,
    assign_buckets,
    build_bucket_scheme,
    define_batch_sizes,
    define_buckets,
    define_diagonal_buckets,
    define_explicit_buckets,
    define_grid_buckets,
)
from nmtbucket.cli.tasks import run_training
from nmtbucket.config import (
    BucketingConfig,
    DataConfig,
    LanguageModelDataConfig,
    ModelConfig,
    SearchConfig,
    SyntheticConfig,
    TokenizerConfig,
    TrainConfig,
    TrainerConfig,
    TranslateConfig,
)
from nmtbucket.data import Batch, BucketIterator, SequenceDataset, TokenSequences, collate
from nmtbucket.data.lm_batch import LMBatch
from nmtbucket.data.sentence_batches import SentenceBatches
from nmtbucket.data.stream import StreamBatches
from nmtbucket.data.words import WordVocabulary
from nmtbucket.errors import BucketConfigError, NmtBucketError, SymGenError
from nmtbucket.executors import (
    BucketExecutor,
    CompileFactory,
    CudaGraphFactory,
    EagerExecutor,
    ExecutorFactory,
    ParameterUpdate,
    StepFn,
    build_executor_factory,
)
from nmtbucket.lm.evaluator import PerplexityEvaluator
from nmtbucket.lm.step import LanguageModelStep
from nmtbucket.models import build_sym_gen
from nmtbucket.models.lm import LSTMLanguageModel, lm_sym_gen
from nmtbucket.translation.step import Seq2SeqStep
from nmtbucket.translation.translator import Translation, Translator

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
    "CompileFactory",
    "CudaGraphFactory",
    "DataConfig",
    "EagerExecutor",
    "ExecutorFactory",
    "IndexBatch",
    "LMBatch",
    "LSTMLanguageModel",
    "LanguageModelDataConfig",
    "LanguageModelStep",
    "LengthKey",
    "LengthPair",
    "ModelConfig",
    "NmtBucketError",
    "ParameterUpdate",
    "PerplexityEvaluator",
    "SearchConfig",
    "SentenceBatches",
    "Seq2SeqStep",
    "SequenceDataset",
    "StepFn",
    "StreamBatches",
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
    "WordVocabulary",
    "assign_buckets",
    "build_bucket_scheme",
    "build_executor_factory",
    "build_sym_gen",
    "collate",
    "define_batch_sizes",
    "define_buckets",
    "define_diagonal_buckets",
    "define_explicit_buckets",
    "define_grid_buckets",
    "lm_sym_gen",
    "run_training",
]
