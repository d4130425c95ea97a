"""Every shipped experiment composes into a valid TrainConfig; typos and wrong types fail at
composition with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from nmtbucket.cli.train import to_train_config
from nmtbucket.config import TrainConfig, check_choices
from nmtbucket.errors import NmtBucketError

EXPERIMENTS = sorted(
    p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "experiment").glob("*.yaml")
)


def _compose(*overrides: str) -> TrainConfig:
    with initialize_config_module(config_module="nmtbucket.conf", version_base=None):
        return to_train_config(compose("train", overrides=list(overrides)))


def test_the_expected_experiments_ship() -> None:
    expected = {"demo", "multi30k_transformer", "multi30k_transformer_cpu", "multi30k_lstm"}
    assert expected | {"multi30k_lstm_cpu"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes(name: str) -> None:
    config = _compose(f"+experiment={name}")
    assert isinstance(config, TrainConfig)
    assert config.name == name
    assert config.run_dir == f"runs/{name}"
    check_choices(config)


def test_cpu_variants_are_time_limited_on_the_cpu() -> None:
    for name in EXPERIMENTS:
        if name.endswith("_cpu") or name == "demo":
            config = _compose(f"+experiment={name}")
            assert config.trainer.device == "cpu"
            assert 0 < config.trainer.max_minutes <= 28


def test_data_root_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMTBUCKET_DATA_ROOT", "/some/where")
    assert _compose("+experiment=multi30k_transformer_cpu").data.root == "/some/where"
    monkeypatch.delenv("NMTBUCKET_DATA_ROOT")
    assert _compose("+experiment=multi30k_transformer_cpu").data.root is None
    assert _compose("data.root=/else").data.root == "/else"


def test_unknown_key_fails_naming_it() -> None:
    with pytest.raises(ConfigCompositionException) as info:
        _compose("trainer.lrr=0.1")
    assert "Key 'lrr' not in 'TrainerConfig'" in str(info.value.__cause__)
    with pytest.raises(NmtBucketError, match=r"unknown config key trainer\.lrr; the keys"):
        _compose("+trainer.lrr=0.1")  # Hydra accepts "+" additions; the schema check does not


def test_wrong_type_fails_naming_the_key() -> None:
    with pytest.raises(ConfigCompositionException) as info:
        _compose("trainer.max_updates=lots")
    assert isinstance(info.value.__cause__, ValidationError)
    assert "max_updates" in str(info.value.__cause__)


def test_unknown_choice_fails_before_any_work() -> None:
    with pytest.raises(
        NmtBucketError, match=r"model.arch must be one of \('transformer', 'lstm', 'lstm_lm'\)"
    ):
        check_choices(_compose("model.arch=gru"))


def test_the_modules_accept_exactly_the_listed_choices() -> None:
    from nmtbucket.bucketing.buckets import OVERLONG_POLICIES
    from nmtbucket.config import CHOICES, EARLY_STOPPING_METRICS, LANGUAGE_MODEL_ARCHS
    from nmtbucket.models import ARCHS

    assert set(ARCHS) | set(LANGUAGE_MODEL_ARCHS) == set(CHOICES["model.arch"])
    assert set(EARLY_STOPPING_METRICS) == set(CHOICES["trainer.early_stopping_metric"])
    assert set(OVERLONG_POLICIES) == set(CHOICES["bucketing.overlong"])


def test_a_depth_setting_the_architecture_does_not_read_is_an_error() -> None:
    language_model = _compose("+experiment=ptb_small", "model.decoder_layers=3")
    with pytest.raises(NmtBucketError, match=r"depth of a language model .* is model\.layers"):
        check_choices(language_model)
    translation = _compose("+experiment=demo", "model.layers=3")
    with pytest.raises(NmtBucketError, match=r"model\.encoder_layers and model\.decoder_layers"):
        check_choices(translation)
    assert _compose("+experiment=ptb_small", "model.layers=3").model.layers == 3
