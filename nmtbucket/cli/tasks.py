"""Which pipeline trains a typed :class:`TrainConfig`: ``data.task`` picks the language model or
the encoder-decoder. Kept apart from the Hydra entry point, so that the Python API
(``nmtbucket.run_training``) does not import Hydra."""

from __future__ import annotations

from typing import Any

from nmtbucket.config import TrainConfig, check_choices
from nmtbucket.lm.pipeline import run_language_model_training
from nmtbucket.translation.pipeline import run_translation_training


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Check ``config`` and train: a language model for ``data.task: lm``, else an
    encoder-decoder. Returns what ``results.json`` holds."""
    check_choices(config)
    if config.data.task == "lm":
        return run_language_model_training(config)
    return run_translation_training(config)
