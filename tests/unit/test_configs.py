"""The shipped bucketing config files validate against BucketingConfig and build a scheme."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nmtbucket import BucketingConfig, build_bucket_scheme

CONF = Path(__file__).resolve().parents[2] / "conf" / "bucketing"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_bucketing_config_files_are_valid(path: Path) -> None:
    schema = OmegaConf.structured(BucketingConfig)
    config = OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.load(path)))
    assert isinstance(config, BucketingConfig)
    lengths = torch.randint(1, 50, (300, 2), generator=torch.Generator().manual_seed(0))
    scheme = build_bucket_scheme(lengths, config)
    assert scheme.default_bucket_key == tuple(int(v) for v in lengths.max(dim=0).values)


def test_config_files_exist() -> None:
    assert {p.stem for p in CONF.glob("*.yaml")} == {"auto", "diagonal", "grid"}
