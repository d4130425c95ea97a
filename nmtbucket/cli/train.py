"""CLI ``nmtbucket-train``: compose the Hydra config (``conf/train.yaml`` plus
``+experiment=NAME`` and overrides), check it against the dataclass schemas, turn it into a typed
:class:`TrainConfig` once and hand that to :func:`~nmtbucket.cli.tasks.run_training`, which
picks the task's pipeline by ``data.task``."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from nmtbucket.cli.tasks import run_training
from nmtbucket.cli.typed_config import to_typed_config
from nmtbucket.config import TrainConfig
from nmtbucket.errors import NmtBucketError

log = logging.getLogger("nmtbucket.train")

# The schema every composed config is merged into: unknown keys and wrong types fail at start.
ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """The typed config; unknown keys and type errors become an NmtBucketError."""
    return to_typed_config(cfg, TrainConfig)


@hydra.main(version_base=None, config_path="pkg://nmtbucket.conf", config_name="train")
def main(cfg: DictConfig) -> None:
    """Entry point of ``nmtbucket-train``; a user error ends with its message and status 1."""
    try:
        run_training(to_train_config(cfg))
    except NmtBucketError as err:
        log.error("%s", err)
        print(f"nmtbucket-train: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
