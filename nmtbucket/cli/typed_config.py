"""What both Hydra CLIs share: turning a composed config into its typed dataclass, with every
unknown key and type error reported as an :class:`NmtBucketError`."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nmtbucket.errors import NmtBucketError

ConfigT = TypeVar("ConfigT")


def to_typed_config(cfg: DictConfig, schema: type[ConfigT]) -> ConfigT:
    """The ``schema`` dataclass instance that ``cfg`` (composed over that schema) describes."""
    reject_unknown_keys(cfg, schema, "")
    try:
        config = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise NmtBucketError(f"invalid configuration: {err}") from None
    assert isinstance(config, schema)
    return config


def reject_unknown_keys(node: DictConfig, schema: type, path: str) -> None:
    """Fail on a key ``schema`` does not have. Hydra lets ``+group.key=value`` add a key even to
    a structured node, and ``to_object`` would then drop it silently; a misspelt option must
    fail instead."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in map(str, node):
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise NmtBucketError(f"unknown config key {path}{key}; the keys here are: {known}")
        child = node._get_node(key)  # not node[key], which raises on a missing (???) value
        if not isinstance(child, DictConfig):
            continue
        child_type = OmegaConf.get_type(child)
        if isinstance(child_type, type) and dataclasses.is_dataclass(child_type):
            reject_unknown_keys(child, child_type, f"{path}{key}.")
