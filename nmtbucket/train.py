"""CLI ``nmtbucket-train``: compose the Hydra config (``conf/train.yaml`` plus
``+experiment=NAME`` and overrides), check it against the dataclass schemas, turn it into a typed
:class:`TrainConfig` once and hand that to :func:`nmtbucket.pipeline.run_training`."""

from __future__ import annotations

import dataclasses
import logging
import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nmtbucket.config import TrainConfig
from nmtbucket.errors import NmtBucketError
from nmtbucket.pipeline import run_training

log = logging.getLogger("nmtbucket.train")

# The schema every composed config is merged into: unknown keys and wrong types fail at start.
ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """The typed config; unknown keys, interpolation and validation errors become an
    NmtBucketError."""
    _reject_unknown_keys(cfg, TrainConfig, "")
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise NmtBucketError(f"invalid configuration: {err}") from None
    assert isinstance(config, TrainConfig)
    return config


def _reject_unknown_keys(node: DictConfig, schema: type, path: str) -> None:
    # Hydra lets "+group.key=value" add a key even to a structured node, and to_object would
    # then drop it silently; a misspelt option must fail instead.
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in map(str, node):
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise NmtBucketError(f"unknown config key {path}{key}; the keys here are: {known}")
        child = node[key]
        child_type = OmegaConf.get_type(child) if isinstance(child, DictConfig) else None
        if isinstance(child_type, type) and dataclasses.is_dataclass(child_type):
            _reject_unknown_keys(child, child_type, f"{path}{key}.")


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
