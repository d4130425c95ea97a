"""Tiny models, batches of several bucket keys and a training loop, shared by the executor tests
on the CPU (graph capture replaced by :class:`RecordedOps`) and on CUDA (real graphs), so both
check the same thing: K updates through an executor give the parameters of K eager updates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from nmtbucket.bucketing.keys import LengthPair
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.config import ModelConfig, TrainerConfig
from nmtbucket.constants import EOS_ID
from nmtbucket.data.batch import Batch, collate
from nmtbucket.data.dataset import SequenceDataset, TokenSequences
from nmtbucket.data.lm_batch import collate_sentences
from nmtbucket.data.stream import StreamBatches
from nmtbucket.distributed import Ranks
from nmtbucket.executors.eager import EagerExecutor
from nmtbucket.executors.interface import ExecutorFactory
from nmtbucket.executors.update import ParameterUpdate
from nmtbucket.lm.step import LanguageModelStep
from nmtbucket.models import build_sym_gen
from nmtbucket.models.lm import LSTMLanguageModel, lm_sym_gen
from nmtbucket.training.optim import build_optimizer, build_scheduler
from nmtbucket.training.step import CarriedStateStep, TrainStep, WindowCounts
from nmtbucket.translation.step import Seq2SeqStep

VOCAB = 24
CASES = ("transformer", "lstm", "lm_stream", "lm_sentences")
DROPOUT = 0.1  # the runs compared use the same random numbers: dropout must not break that


class RecordedOps:
    """A stand-in for CUDA-graph capture on the CPU, with a graph's semantics: warm-up runs as
    asked; "capture" runs the function once while recording every aten operation with the very
    tensors it read and wrote (forward, backward and optimizer alike), refusing host
    synchronisations as a real capture does; "replay" re-runs the recorded operations on those
    tensors and writes each result into the tensor the capture produced. So a Python value read
    during capture (a flag, a float) is frozen, exactly as in a CUDA graph. Unlike a real
    capture, recording executes the step once: the executor's warm-up guard undoes that. It
    cannot show what only a GPU does: memory reuse within a pool (it keeps every tensor alive),
    uninitialised outputs before the first replay, library state (cuDNN), or host copies other
    than reading a number. A collective (``torch.distributed``'s functional all-reduce) is
    recorded and replayed like any operator, its result waited for before it is used, as stream
    order does in a CUDA graph. Every pool handed to it is kept in ``pools``."""

    def __init__(self) -> None:
        self.pools: list[Any] = []

    def __call__(
        self, run: Callable[[], Any], warmup_runs: int, pool: Any
    ) -> tuple[Callable[[], None], Any]:
        self.pools.append(pool)
        for _ in range(warmup_runs):
            run()
        recorder = _OpRecorder()
        with recorder:
            output = run()
        operations = recorder.operations

        def replay() -> None:
            for func, args, kwargs, recorded, grad_mode in operations:
                with torch.set_grad_enabled(grad_mode):  # some kernels keep extras for backward
                    fresh = func(*args, **kwargs)
                if func.namespace == "_c10d_functional":
                    # a collective's result is ready once waited for; in a CUDA graph, the
                    # kernels after it on the stream wait for it
                    fresh = torch.ops._c10d_functional.wait_tensor(fresh)
                with torch.no_grad():
                    _write_into(recorded, fresh)

        return replay, output


class _OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.operations: list[tuple[Any, Any, Any, Any, bool]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            raise RuntimeError("a host synchronisation (.item(), float(t), bool(t)) in a capture")
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        self.operations.append((func, args, kwargs, result, torch.is_grad_enabled()))
        return result


def _write_into(recorded: Any, fresh: Any) -> None:
    for kept, new in zip(tree_flatten(recorded)[0], tree_flatten(fresh)[0], strict=True):
        if isinstance(kept, torch.Tensor) and kept is not new:
            kept.copy_(new)


@dataclass
class Case:
    """A model builder (given an executor factory), its training batches and its step."""

    build: Callable[[ExecutorFactory], BucketingModule]
    batches: list[Any]
    make_step: Callable[[], TrainStep]
    loss_per: str = "token"


def _seq2seq_case(arch: str, device: torch.device, dropout: float, ranks: Ranks, rows: int) -> Case:
    config = ModelConfig(arch=arch, d_model=16, encoder_layers=1, decoder_layers=1)
    config.num_heads, config.d_ff, config.dropout = 2, 32, dropout
    generator = torch.Generator().manual_seed(0)
    src, tgt = [], []
    for _ in range(24):
        s, t = (int(x) for x in torch.randint(2, 9, (2,), generator=generator))
        src.append([*torch.randint(4, VOCAB, (s - 1,), generator=generator).tolist(), EOS_ID])
        tgt.append([*torch.randint(4, VOCAB, (t - 1,), generator=generator).tolist(), EOS_ID])
    data = SequenceDataset(TokenSequences.from_lists(src), TokenSequences.from_lists(tgt))
    keys = [LengthPair(8, 8), LengthPair(5, 6), LengthPair(8, 8), LengthPair(4, 4)]
    batches = []
    for i in range(8):
        key = keys[i % len(keys)]
        fits = [
            j for j in range(len(src)) if len(src[j]) <= key.src_len and len(tgt[j]) <= key.tgt_len
        ]
        chosen = [fits[(i + r) % len(fits)] for r in range(rows)]
        share = rows // ranks.world_size  # this rank's consecutive rows, as the sampler splits
        mine = chosen[ranks.rank * share : (ranks.rank + 1) * share]
        batches.append(collate(data, mine, key, pad_id=0).to(device))

    def build(executors: ExecutorFactory) -> BucketingModule:
        torch.manual_seed(0)
        sym_gen = build_sym_gen(config, VOCAB, VOCAB)
        return BucketingModule(sym_gen, LengthPair(8, 8), executors).to(device)

    return Case(build, batches, lambda: Seq2SeqStep(label_smoothing=0.1))


def _lm_case(mode: str, device: torch.device, dropout: float, ranks: Ranks, rows: int) -> Case:
    tokens = torch.randint(0, VOCAB, (70,), generator=torch.Generator().manual_seed(2))
    if mode == "stream":
        # the last batch continues, padded
        stream = StreamBatches(
            tokens, batch_size=rows, bptt=6, rank=ranks.rank, world_size=ranks.world_size
        )
        batches = [b.to(device) for b in stream]
        default_key = 6
    else:
        sentences = [[*tokens[i : i + n].tolist(), EOS_ID] for i, n in enumerate([3, 6, 2, 5])]
        batches = [
            collate_sentences([*sentences[i : i + 2], []], key, EOS_ID).to(device)
            for i, key in ((0, 7), (2, 6), (1, 7), (0, 7))
        ]
        default_key = 7

    def build(executors: ExecutorFactory) -> BucketingModule:
        torch.manual_seed(0)
        core = LSTMLanguageModel(VOCAB, d_model=8, num_layers=2, dropout=dropout)
        return BucketingModule(lm_sym_gen(core), default_key, executors).to(device)

    return Case(build, batches, LanguageModelStep, loss_per="row")


def build_case(
    name: str,
    device: torch.device,
    dropout: float = DROPOUT,
    ranks: Ranks | None = None,
    rows: int = 3,
) -> Case:
    """One of :data:`CASES`; a model built by its ``build`` starts from the same weights.
    Translation batches (and language-model stream batches) hold ``rows`` rows (columns) in
    all, of which ``ranks`` takes its share (``rows`` must then divide evenly); sentence
    batches of a language model are not split."""
    ranks = ranks or Ranks()
    if name in ("transformer", "lstm"):
        return _seq2seq_case(name, device, dropout, ranks, rows)
    return _lm_case(name.removeprefix("lm_"), device, dropout, ranks, rows)


@dataclass
class Training:
    """A model with its optimizer, update and step, trained by :func:`train`."""

    model: BucketingModule
    optimizer: torch.optim.Optimizer
    update: ParameterUpdate
    step: TrainStep
    scheduler: torch.optim.lr_scheduler.LambdaLR
    losses: list[float]


def start_training(
    case: Case,
    executors: ExecutorFactory = EagerExecutor,
    optimizer: str = "adamw",
    ranks: Ranks | None = None,
) -> Training:
    model = case.build(executors).train()
    config = TrainerConfig(lr=3e-3, warmup_updates=2, clip_norm=0.5, optimizer=optimizer)
    built = build_optimizer(model.parameters(), config, executors.captures_update)
    update = ParameterUpdate(model.parameters(), built, config.clip_norm, ranks)
    scheduler = build_scheduler(built, config)
    return Training(model, built, update, case.make_step(), scheduler, [])


def train(
    training: Training,
    batches: Sequence[Any],
    accumulate: int,
    loss_per: str,
    ranks: Ranks | None = None,
) -> None:
    """One update per ``accumulate`` batches, the update run with the last of them, as the
    Trainer does: under several ``ranks`` the loss is normalised by all ranks' counts, a step
    that carries state drops it after a skipped update, and the schedule steps at every
    update, skipped or not."""
    ranks = ranks or Ranks()
    for first in range(0, len(batches) - accumulate + 1, accumulate):
        window = batches[first : first + accumulate]
        counts = WindowCounts.of(window).summed(ranks)
        training.step.normalizer = counts.normalizer(loss_per)
        for i, batch in enumerate(window):
            last = i == len(window) - 1
            loss = training.model.train_step(batch, training.step, training.update, last)
            training.losses.append(float(loss))
        if isinstance(training.step, CarriedStateStep):
            training.step.discard_state_if(training.update.skipped)
        training.scheduler.step()


def parameters(model: BucketingModule) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def memory_case(
    device: torch.device, rows: int = 64
) -> tuple[Callable[[ExecutorFactory], tuple[BucketingModule, Seq2SeqStep, ParameterUpdate]], list]:
    """A mid-sized Transformer (d_model 256, 3+3 layers, 8000 words) and one batch of ``rows``
    rows for each of six keys, the largest (default) key first: it is then the largest in every
    activation too (with token-budget batch sizes a shorter key with more rows can have more
    target tokens, and so larger logits). For measuring what captured graphs cost in memory."""
    keys = [LengthPair(s, t) for s, t in ((64, 64), (48, 56), (40, 32), (32, 24), (24, 16), (8, 8))]
    vocab = 8000
    generator = torch.Generator().manual_seed(0)
    examples = []
    for key in keys:
        src = torch.randint(4, vocab, (rows, key.src_len), generator=generator)
        tgt = torch.randint(4, vocab, (rows, key.tgt_len), generator=generator)
        lengths = (torch.full((rows,), key.src_len), torch.full((rows,), key.tgt_len))
        batch = Batch(
            key, src, lengths[0], tgt, lengths[1], torch.arange(rows), src.numel() + tgt.numel()
        )
        examples.append(batch.to(device))
    config = ModelConfig(arch="transformer", d_model=256, encoder_layers=3, decoder_layers=3)
    config.num_heads, config.d_ff, config.dropout = 4, 1024, 0.1

    def build(executors: ExecutorFactory) -> tuple[BucketingModule, Seq2SeqStep, ParameterUpdate]:
        torch.manual_seed(0)
        model = BucketingModule(build_sym_gen(config, vocab, vocab), keys[0], executors)
        model = model.to(device).train()
        trainer = TrainerConfig(lr=1e-3, clip_norm=1.0)
        optimizer = build_optimizer(model.parameters(), trainer, executors.captures_update)
        update = ParameterUpdate(model.parameters(), optimizer, trainer.clip_norm)
        return model, Seq2SeqStep(label_smoothing=0.1, bf16_cuda=True), update

    return build, examples
