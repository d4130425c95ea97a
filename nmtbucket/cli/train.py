"""CLI ``nmtbucket-train``: compose the Hydra config (``conf/train.yaml`` plus
``+experiment=NAME`` and overrides), check it against the dataclass schemas, turn it into a typed
:class:`TrainConfig` once and hand that to :func:`~nmtbucket.cli.tasks.run_training`, which
picks the task's pipeline by ``data.task``."""

from __future__ import annotations

import dataclasses
import logging
import sys

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nmtbucket.cli.tasks import run_training
from nmtbucket.cli.typed_config import to_typed_config
from nmtbucket.config import TrainConfig
from nmtbucket.distributed import Ranks
from nmtbucket.errors import NmtBucketError
from nmtbucket.training.stop_signals import EXIT_INTERRUPTED, TrainingInterrupted

log = logging.getLogger("nmtbucket.train")

# The schema every composed config is merged into: unknown keys and wrong types fail at start.
ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """The typed config; unknown keys and type errors become an NmtBucketError. In a Hydra
    multirun each job trains in its own folder, ``run_dir/JOB_NUMBER`` (``hydra.sweep``)."""
    config = to_typed_config(cfg, TrainConfig)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        config = dataclasses.replace(config, run_dir=HydraConfig.get().runtime.output_dir)
    return config


@hydra.main(version_base=None, config_path="pkg://nmtbucket.conf", config_name="train")
def main(cfg: DictConfig) -> None:
    """Entry point of ``nmtbucket-train``; a user error ends with its message and status 1, a
    stop on SIGTERM or SIGUSR1 (state saved, rerun to continue) with status 75."""
    try:
        run_training(to_train_config(cfg))
    except TrainingInterrupted as stopped:
        log.warning("%s", stopped)
        print(f"nmtbucket-train: {stopped}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except NmtBucketError as err:
        log.error("%s", err)
        print(f"nmtbucket-train: error: {err}", file=sys.stderr)
        sys.exit(1)


def entry() -> None:
    """The ``nmtbucket-train`` command. Under torchrun, ranks other than 0 write no Hydra files
    (``.hydra/``, the log file) into the run folder, which rank 0 alone writes; they log
    warnings and errors to the console only."""
    if Ranks.from_environment().rank != 0:
        sys.argv += [
            "hydra.output_subdir=null",
            "hydra/job_logging=stdout",
            "hydra.job_logging.root.level=WARNING",
        ]
    main()


if __name__ == "__main__":
    entry()
