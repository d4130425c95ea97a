"""The training loop: bucketed batches through a BucketingModule, updates with gradient
accumulation, periodic validation with early stopping, checkpoints (last plus best K) and exact
resume. It is handed everything it runs (batches, step, optimizer, schedule, update, evaluator)
and builds none of it, so it serves translation and language modelling alike through small
interfaces: :class:`TrainBatches`, :class:`~nmtbucket.training.evaluation.SplitEvaluator`, and
the batch and step protocols of :mod:`nmtbucket.training.step`."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import torch

from nmtbucket.bucketing.keys import key_lengths
from nmtbucket.bucketing.module import BucketingModule
from nmtbucket.config import EARLY_STOPPING_METRICS, TrainerConfig
from nmtbucket.console import progress_bar
from nmtbucket.distributed import Ranks, barrier, from_main_rank, gathered, sum_across_ranks
from nmtbucket.errors import NmtBucketError
from nmtbucket.faults import fault_point
from nmtbucket.training.checkpoint import (
    STATE_FORMAT,
    UNREADABLE,
    CheckpointKeeper,
    load_checkpoint,
    load_last_state,
)
from nmtbucket.training.counters import IntervalSums, TrainProgress, limit_reached
from nmtbucket.training.evaluation import SplitEvaluator
from nmtbucket.training.metrics import MetricsLogger
from nmtbucket.training.optim import Optimization, after_loading, implementation_settings
from nmtbucket.training.step import CarriedStateStep, TrainBatch, TrainStep, WindowCounts
from nmtbucket.training.stop_signals import StopSignals, TrainingInterrupted

log = logging.getLogger(__name__)

READ_TALLY_EVERY = 100
"""The most updates between two reads of the update tally (log lines read it too)."""


class TrainingDiverged(NmtBucketError):
    """Too many updates in a row had a non-finite loss or gradient."""


class TrainBatches(Protocol):
    """Training batches, epoch after epoch: iterating yields the rest of the current epoch and
    then moves ``epoch`` on; ``position`` counts the batches of the epoch already yielded."""

    @property
    def epoch(self) -> int: ...

    @property
    def position(self) -> int: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def example_batches(self) -> list[Any]:
        """One batch of every bucket key, the largest first, without moving the position."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def upcoming_epoch(batches: TrainBatches) -> int:
    """The epoch of the next batch to train (an iterator moves its ``epoch`` on only when asked
    for a batch past the end): what a per-epoch learning-rate schedule reads."""
    exhausted = batches.position >= len(batches)
    return batches.epoch + int(exhausted)


class Trainer:
    """Trains ``model`` on ``train_iter`` with ``step`` and ``optimization``, validating with
    ``evaluator`` into ``run_dir``. ``config`` was checked by
    :func:`~nmtbucket.config.check_choices`.

    Under torchrun each rank runs its own Trainer on its share of every step (``ranks``): the
    update sums the ranks' gradients (:class:`~nmtbucket.executors.update.ParameterUpdate`),
    the counts of each step are summed over the ranks, so every rank takes the same decisions,
    and rank 0 alone validates (the others receive its scores) and writes files."""

    def __init__(
        self,
        model: BucketingModule,
        train_iter: TrainBatches,
        evaluator: SplitEvaluator,
        step: TrainStep,
        optimization: Optimization,
        config: TrainerConfig,
        run_dir: str | Path,
        device: torch.device,
        ranks: Ranks | None = None,
        identity: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.model = model
        self.train_iter = train_iter
        self.evaluator = evaluator
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = device
        self.ranks = ranks or Ranks()
        self.identity = {label: dict(file) for label, file in (identity or {}).items()}
        self.step = step
        self.optimizer = optimization.optimizer
        self.update = optimization.update
        self.scheduler = optimization.scheduler
        higher = EARLY_STOPPING_METRICS[config.early_stopping_metric]
        self.keeper = CheckpointKeeper(
            self.run_dir / "checkpoints",
            config.keep_best,
            higher,
            config.keep_last,
            writes=self.ranks.is_main,
        )
        self.metrics = MetricsLogger(
            self.run_dir, config.metrics_format, config.tensorboard, writes=self.ranks.is_main
        )
        self.progress = TrainProgress()
        self._interval = IntervalSums()
        self._latest_loss = 0.0  # the mean loss of the updates of the latest tally read
        self._tally_read_at = -1  # progress.updates when the tally was last read
        self._epoch_validation_due = False  # an epoch ended inside an accumulation window
        self._clock = (0.0, 0.0)  # set by fit(): when training started (earlier runs included)
        # and when this run did

    # --- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs: weights, optimizer, schedule, iterator position,
        the step's carried state, kept best checkpoints, counters and random state."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        if self.ranks.distributed:  # each rank draws its own dropout masks
            rng = {"ranks": gathered(rng, self.ranks)}
        return {
            "format": STATE_FORMAT,
            "identity": self.identity,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iterator": self.train_iter.state_dict(),
            "step": self._carried_state(),
            "keeper": self.keeper.state_dict(),
            "progress": {k: v for k, v in asdict(self.progress).items() if k != "stop_reason"},
            "rng": rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` taken by a trainer with the same model and data
        (the files of :attr:`identity` are checked: their hashes must not have changed)."""
        self._check_identity(state.get("identity", {}))  # absent before identities existed
        if state.get("format") != STATE_FORMAT:
            raise NmtBucketError(
                f"not an nmtbucket training state (format {state.get('format')!r})"
            )
        try:
            self.model.load_state_dict(state["model"])
            built = implementation_settings(self.optimizer)
            self.optimizer.load_state_dict(state["optimizer"])
            after_loading(self.optimizer, built)
        except (RuntimeError, ValueError, KeyError) as err:
            raise NmtBucketError(
                f"the checkpoint in {self.run_dir} does not fit this model or optimizer ({err}); "
                "resume with the settings it was trained with, or use another run_dir"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.base_lrs = [float(lr) for lr in self.scheduler.base_lrs]
        self.train_iter.load_state_dict(state["iterator"])
        if isinstance(self.step, CarriedStateStep):
            self.step.load_state_dict(self._own_carried_state(state.get("step", {})))
        self.keeper.load_state_dict(state["keeper"])
        self.model.release_executors()  # graphs captured before hold the replaced state tensors
        self.progress = TrainProgress(**state["progress"])
        self.update.tally.continue_run(self.progress.nonfinite_in_row)
        rng = state["rng"]
        if "ranks" in rng:
            rng = self._own_part(rng["ranks"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def _check_identity(self, saved: Mapping[str, Mapping[str, str]]) -> None:
        """Refuse to continue a run whose training data or tokenizer files changed since it
        started (edited in place, or a rebuilt cache)."""
        changed = [
            f"the {label} {now['path']} (sha256 {saved[label]['sha256'][:12]}... when the run "
            f"started, {now['sha256'][:12]}... now)"
            for label, now in self.identity.items()
            if label in saved and saved[label]["sha256"] != now["sha256"]
        ]
        if changed:
            raise NmtBucketError(
                f"cannot resume {self.run_dir}: {'; '.join(changed)} changed since the run "
                "started, so it would continue on other data. Restore the files the run "
                "started with to continue it, or train on the new ones in a new run (set "
                "another run_dir or name)"
            )

    def _carried_state(self) -> dict[str, Any]:
        """The step's carried state; under torchrun every rank's (each carries its own), by
        rank. Every rank must call this (a collective)."""
        if not isinstance(self.step, CarriedStateStep):
            return {}
        if not self.ranks.distributed:
            return self.step.state_dict()
        return {"ranks": gathered(self.step.state_dict(), self.ranks)}

    def _own_carried_state(self, saved: dict[str, Any]) -> dict[str, Any]:
        """This rank's part of a saved :meth:`_carried_state` (none before language models)."""
        by_rank = saved.get("ranks")
        if by_rank is None and self.ranks.distributed and saved:
            raise NmtBucketError(
                f"{self.keeper.last_path} carries the state of one process, not of "
                f"{self.ranks.world_size} ranks; resume it with as many processes as it was "
                "trained with"
            )
        return saved if by_rank is None else dict(self._own_part(by_rank))

    def _own_part(self, by_rank: list[Any]) -> Any:
        """This rank's entry of what every rank saved into ``last.pt``."""
        if len(by_rank) != self.ranks.world_size:
            raise NmtBucketError(
                f"{self.keeper.last_path} was saved by {len(by_rank)} ranks, this run has "
                f"{self.ranks.world_size}; resume it with as many processes as it was "
                "trained with"
            )
        return by_rank[self.ranks.rank]

    def load_best_weights(self) -> str:
        """Load the best checkpoint's weights into the model, for scoring after training; its
        file name, or ``last`` when there is none (the model keeps its last weights)."""
        best = self.keeper.best_path
        if best is None:
            log.warning("no best checkpoint: scoring with the last weights")
            return "last"
        self.model.load_state_dict(load_checkpoint(best, map_location=self.device)["model"])
        return best.name

    def resume_if_possible(self) -> bool:
        """Load the run directory's newest readable training state (``checkpoints/last.pt``,
        or ``previous.pt`` when ``last.pt`` is torn) when there is one."""
        found = load_last_state(self.keeper.directory)
        if found is None:
            return False
        state, path = found
        self.load_state_dict(state)
        last = self.keeper.last_path
        if path != last and last.exists() and self.ranks.is_main:
            # Out of the way before the next save would keep it as previous.pt in place of
            # the good state loaded here (a rank still to read it falls back the same way).
            last.replace(last.with_name(UNREADABLE))
            log.warning("moved the unreadable %s to %s", last, UNREADABLE)
        self.metrics.forget_after(self.progress.updates)
        log.info(
            "resumed from %s at update %d (epoch %d, batch %d of it)",
            path,
            self.progress.updates,
            self.train_iter.epoch,
            self.train_iter.position,
        )
        return True

    # --- the loop --------------------------------------------------------------------------

    def fit(self) -> TrainProgress:
        """Train until a limit, early stopping or divergence; validate and save at the end
        (also when a run resumed after a stop signal finds nothing left to train)."""
        self.progress.stop_reason = self._limit_reached() or ""
        if self.progress.stop_reason:
            log.info("nothing to train: %s", self.progress.stop_reason)
        else:
            self._train_until_stopped()
        self._read_tally()  # the counts of the last updates, for the results
        if self.progress.updates and self.progress.validated_update != self.progress.updates:
            self._validate_and_save()
        if self.config.keep_last and self.progress.updates not in self.keeper.recent:
            self._save(self.keeper.snapshot(self.model.state_dict(), self.progress.updates))
        self.metrics.close()
        return self.progress

    def _train_until_stopped(self) -> None:
        """The training loop, until ``progress.stop_reason`` is set; on a stop signal, save
        the whole state and raise :class:`TrainingInterrupted`."""
        self.model.train()
        run_started = time.monotonic()
        started = run_started - self.progress.train_seconds
        self._clock = (started, run_started)
        epoch_updates = self.config.max_epochs * (len(self.train_iter) // self.config.accumulate)
        total = self.config.max_updates or epoch_updates or None
        bar = progress_bar(
            total,
            "train",
            enabled=self.config.progress and self.ranks.is_main,
            unit="upd",
            initial=self.progress.updates,
        )
        self._prepare_executors()
        window: list[TrainBatch] = []  # micro-batches of the next update; may span an epoch end
        signaled: str | None = None
        with StopSignals() as signals:
            try:
                while not self.progress.stop_reason:
                    for batch in self.train_iter:
                        window.append(batch)
                        if len(window) < self.config.accumulate:
                            continue
                        self._train_window(window)
                        bar.set_postfix(self._bar_fields(batch), refresh=False)
                        bar.update(1)
                        window = []
                        self.progress.train_seconds = time.monotonic() - started
                        self._after_update()
                        limit = self._limit_reached(*self._elapsed())
                        signaled = self._signal_to_stop(signals)
                        self.progress.stop_reason = limit or signaled or self.progress.stop_reason
                        if self.progress.stop_reason:
                            break
                    else:
                        self._after_epoch(pending_batches=len(window))
                        if self.progress.stop_reason and window:  # no batch is left untrained
                            self._train_window(window)
            finally:
                bar.close()
        if signaled:
            self._save([])  # the full state, without validating: a preempted job has seconds
            self.metrics.close()
            raise TrainingInterrupted(
                f"stopped on {signaled} after update {self.progress.updates}; the state is "
                f"saved in {self.keeper.last_path}: rerun the same command to continue"
            )

    def _prepare_executors(self) -> None:
        """Under ``executor=cuda_graph``: capture every key's step before training, the
        default (largest) key first so that the others reuse its memory."""
        if not self.model.executor_factory.captures_update:
            return
        started = time.monotonic()
        examples = [b.to(self.device) for b in self.train_iter.example_batches()]
        self.model.prepare_train_steps(
            examples, self.step, self.update, accumulating=self.config.accumulate > 1
        )
        log.info(
            "captured the training step of %d bucket keys in %.1f s",
            len(examples),
            time.monotonic() - started,
        )

    def _train_window(self, window: list[TrainBatch]) -> None:
        """Forward and backward on each micro-batch of ``window``, the update run with the last
        one (one captured graph under ``executor=cuda_graph``). Nothing is read back from the
        device: the losses and whether the update was skipped (a non-finite loss or gradient)
        are counted on it, in the update's tally, which :meth:`_read_tally` reads at log
        intervals. So an update counts, in the schedule and the limits, whether or not it was
        skipped."""
        counts = WindowCounts.of(window).summed(self.ranks)  # all ranks together
        self.step.normalizer = counts.normalizer(self.config.loss_per)
        for i, batch in enumerate(window):
            on_device = batch.to(self.device, non_blocking=True)
            last = i == len(window) - 1
            self.model.train_step(on_device, self.step, self.update, apply_update=last)
            self.progress.batches += 1
        if isinstance(self.step, CarriedStateStep):
            self.step.discard_state_if(self.update.skipped)  # nothing non-finite carried on
        self.scheduler.step()
        self.progress.updates += 1
        self.progress.tgt_tokens += counts.target_tokens
        self.progress.real_tokens += counts.real_tokens
        self.progress.padded_tokens += counts.padded_tokens
        self._interval.tgt_tokens += counts.target_tokens

    def _read_tally(self) -> None:
        """Read the update tally (the loop's one wait for the device between log lines): count
        the skipped updates, note the loss, and stop a run whose skipped updates in a row reached
        ``trainer.max_bad_updates``. Once per update: a log line, validation and save at the
        same update share one read."""
        if self._tally_read_at == self.progress.updates:
            return
        self._tally_read_at = self.progress.updates
        tally = self.update.tally.read()
        self._interval.loss_sum += tally.loss_sum
        self._interval.made_updates += tally.made
        self._interval.max_grad_norm = _larger(self._interval.max_grad_norm, tally.max_grad_norm)
        if tally.made:
            self._latest_loss = tally.mean_loss
        self.progress.nonfinite_updates += tally.skipped
        self.progress.nonfinite_in_row = tally.skipped_in_row
        if tally.skipped:
            log.warning(
                "%d of the %d updates up to update %d skipped: non-finite loss or gradient "
                "(%d in a row at most; %d skipped in all; largest gradient norm %s)",
                tally.skipped,
                tally.made + tally.skipped,
                self.progress.updates,
                tally.longest_skipped_run,
                self.progress.nonfinite_updates,
                tally.max_grad_norm,
            )
        if tally.longest_skipped_run and tally.longest_skipped_run >= self.config.max_bad_updates:
            raise TrainingDiverged(
                f"{tally.longest_skipped_run} updates in a row had a non-finite loss or "
                f"gradient (seen at update {self.progress.updates}), so training stopped "
                f"(trainer.max_bad_updates={self.config.max_bad_updates}). In a new run "
                "(another run_dir), lower trainer.lr, raise trainer.warmup_updates or set "
                "trainer.clip_norm: resuming this one keeps the learning-rate schedule saved in "
                f"{self.keeper.last_path}, whatever the config says"
            )

    def _after_update(self) -> None:
        """Log, validate and save when due; read the update tally for each log line and at
        least every ``READ_TALLY_EVERY`` updates, so that a diverging run stops soon."""
        updates = self.progress.updates
        logs = bool(self.config.log_every) and updates % self.config.log_every == 0
        if logs or updates % READ_TALLY_EVERY == 0:
            self._read_tally()
        if logs:
            self._log_interval()
            self._interval = IntervalSums()
        every = self.config.validate_every
        due = self._epoch_validation_due or (every and updates and updates % every == 0)
        if due and self.progress.validated_update != updates:
            self._validate_and_save()
        self._epoch_validation_due = False
        every = self.config.save_every
        if every and updates and updates % every == 0:
            self._save(self.keeper.snapshot(self.model.state_dict(), updates))

    def _after_epoch(self, pending_batches: int) -> None:
        """Stop at ``max_epochs``; validate if asked, once the epoch's last batches (still
        ``pending_batches`` in the accumulation window) are trained: a checkpoint must not
        record the next epoch while batches of this one wait untrained."""
        epoch = self.train_iter.epoch  # already advanced to the next epoch
        log.info("epoch %d done at update %d", epoch, self.progress.updates)
        if self.config.max_epochs and epoch >= self.config.max_epochs:
            self.progress.stop_reason = f"reached trainer.max_epochs={self.config.max_epochs}"
        if (
            not self.config.validate_each_epoch
            or self.progress.validated_update == self.progress.updates
        ):
            return
        if pending_batches:
            self._epoch_validation_due = True  # after the update that trains them
            return
        self._validate_and_save()
        limit = self._limit_reached(*self._elapsed())  # patience may have run out
        self.progress.stop_reason = self.progress.stop_reason or limit or ""

    def _signal_to_stop(self, signals: StopSignals) -> str | None:
        """The stop signal this process received (see :mod:`.stop_signals`); under torchrun any
        rank's, so that every rank stops after the same update (one small all-reduce)."""
        if not self.ranks.distributed:
            return signals.received
        (count,) = sum_across_ranks([float(bool(signals.received))], self.ranks)
        return (signals.received or "a stop signal on another rank") if count else None

    def _elapsed(self) -> tuple[float, float]:
        """Seconds of training in all and in this command (since :meth:`fit` started); under
        torchrun rank 0's, so that every rank stops at the same update when a time limit is
        reached."""
        started, run_started = self._clock
        now = time.monotonic()
        elapsed = [now - started, now - run_started]
        timed = self.config.max_minutes > 0 or self.config.max_minutes_per_run > 0
        if not (self.ranks.distributed and timed):
            return elapsed[0], elapsed[1]
        mine = elapsed if self.ranks.is_main else [0.0, 0.0]
        total, this_run = sum_across_ranks(mine, self.ranks)
        return total, this_run

    def _limit_reached(
        self, elapsed: float | None = None, elapsed_this_run: float = 0.0
    ) -> str | None:
        return limit_reached(
            self.config, self.progress, self.train_iter.epoch, elapsed, elapsed_this_run
        )

    def _validate_and_save(self) -> None:
        self._read_tally()  # a run that diverged is not validated
        self.progress.validated_update = self.progress.updates
        scores = self.evaluator.evaluate(self.model) if self.ranks.is_main else None
        scores = from_main_rank(scores, self.ranks)  # the same decisions on every rank
        assert scores is not None
        self.progress.validations += 1
        score = scores.metric(self.config.early_stopping_metric)
        finite = math.isfinite(score)
        if not finite:
            log.warning(
                "validation %s is %s at update %d: not a best score, no best checkpoint",
                self.config.early_stopping_metric,
                score,
                self.progress.updates,
            )
        improved = finite and self._improves(score)
        if improved:
            self.progress.best_score = score
            self.progress.validations_without_improvement = 0
        else:
            self.progress.validations_without_improvement += 1
        self.metrics.log("valid", self.progress.updates, **scores.as_dict(), best=improved)
        log.info(
            "validation at update %d: %s%s",
            self.progress.updates,
            scores.describe(),
            " (best so far)" if improved else "",
        )
        if self.progress.validations == 1:
            for signature in scores.signatures():
                log.info("%s", signature)
        dropped = []
        if finite:
            dropped = self.keeper.consider(self.model.state_dict(), self.progress.updates, score)
        fault_point("between_best_and_last")
        self._save(dropped)

    def _save(self, dropped: list[str]) -> None:
        """Save ``last.pt`` and then delete the ``dropped`` checkpoint files (rank 0); every
        rank waits until that is done. The tally is read first: the state holds the counts."""
        self._read_tally()
        self.keeper.save_last(self.state_dict())  # names the kept files before ...
        self.keeper.prune(dropped)  # ... the others are deleted (files that previous.pt
        # names may go: a run resumed from it forgets them with a warning)
        barrier(self.ranks)

    def _improves(self, score: float) -> bool:
        best = self.progress.best_score
        if best is None:
            return True
        higher = EARLY_STOPPING_METRICS[self.config.early_stopping_metric]
        return score > best if higher else score < best

    def _log_interval(self) -> None:
        interval = self._interval
        seconds = max(time.monotonic() - interval.start, 1e-9)
        # each rank's mean loss per target token, averaged over the ranks (NaN: every update
        # of the interval was skipped)
        (loss_sum,) = sum_across_ranks([interval.loss_sum], self.ranks)
        made = interval.made_updates
        self.metrics.log(
            "train",
            self.progress.updates,
            train_loss=loss_sum / self.ranks.world_size / made if made else math.nan,
            lr=float(self.scheduler.get_last_lr()[0]),
            tgt_tokens_per_second=interval.tgt_tokens / seconds,
            max_grad_norm=interval.max_grad_norm,
            padding_percent=self.progress.padding_percent,
            epoch=self.train_iter.epoch,
            nonfinite_updates=self.progress.nonfinite_updates,
        )

    def _bar_fields(self, batch: TrainBatch) -> dict[str, Any]:
        seconds = max(time.monotonic() - self._interval.start, 1e-9)
        return {
            "tok/s": round(self._interval.tgt_tokens / seconds),
            "pad%": round(self.progress.padding_percent, 1),
            "key": key_lengths(batch.bucket_key),
            "loss": round(self._latest_loss, 3),
        }


def _larger(a: float, b: float) -> float:
    """The larger of two gradient norms, NaN if either is (a non-finite gradient is news)."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)
