"""The run directory every task writes: opened (with the check that a resumed run continues the
same data, model and buckets), and the files that describe the run (the resolved config and
the bucket keys). The pipeline adds ``results.json``, the Trainer ``checkpoints/`` and metrics."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nmtbucket.bucketing.keys import LengthKey, key_lengths
from nmtbucket.config import ModelConfig, TrainConfig
from nmtbucket.errors import NmtBucketError
from nmtbucket.files import atomic_write_json

log = logging.getLogger(__name__)


def open_run_dir(config: TrainConfig) -> Path:
    """``config.run_dir``, created; when it holds a run already, check that ``config`` may
    resume it (``resume=true`` and the same fixed settings)."""
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = (run_dir / "checkpoints" / "last.pt").exists()
    if resuming and not config.resume:
        raise NmtBucketError(
            f"{run_dir} already holds a training run and resume=false; pick another run_dir "
            "(or name), or set resume=true to continue it"
        )
    if resuming:
        _check_resumable(run_dir, config)
    return run_dir


RESUME_FIXED = ("data", "model", "bucketing")
"""Config sections a resumed run must share with the run it continues."""


def _check_resumable(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume with other data, model or buckets; warn about other trainer settings
    (limits may change; optimizer settings come from the checkpoint)."""
    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        return
    saved = upgrade_saved_config(json.loads(saved_path.read_text(encoding="utf-8")))
    now = dataclasses.asdict(config)
    fixed = [k for s in RESUME_FIXED for k in _differences(saved.get(s), now[s], f"{s}.")]
    if fixed:
        raise NmtBucketError(
            f"cannot resume {run_dir}: these settings differ from the run it holds: "
            f"{', '.join(fixed)}; use another run_dir (or name) for a new run"
        )
    changed = _differences(saved.get("trainer"), now["trainer"], "trainer.")
    if changed:
        log.warning(
            "resuming with changed %s; limits and validation settings take effect, optimizer "
            "and schedule settings come from the checkpoint",
            ", ".join(changed),
        )


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json`` written before ``model.layers`` existed, as it reads now: a language
    model's depth was ``model.decoder_layers``, which it no longer reads."""
    model = saved.get("model")
    if not isinstance(model, dict) or "layers" in model:
        return saved
    defaults = ModelConfig()
    if model.get("arch") == "lstm_lm":
        model["layers"] = model.get("decoder_layers", defaults.layers)
        model["decoder_layers"] = defaults.decoder_layers
    else:
        model["layers"] = defaults.layers
    return saved


def write_run_files(
    run_dir: Path, config: TrainConfig, batch_sizes: Mapping[LengthKey, int]
) -> None:
    """``config.json`` (the resolved config, checked when the run is resumed) and
    ``buckets.json`` (one ``[*lengths, rows per batch]`` row per training key)."""
    atomic_write_json(run_dir / "config.json", dataclasses.asdict(config))
    rows = [[*key_lengths(key), size] for key, size in batch_sizes.items()]
    atomic_write_json(run_dir / "buckets.json", rows)


def _differences(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(old.keys() | new.keys())
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')} ({old!r} -> {new!r})"]
