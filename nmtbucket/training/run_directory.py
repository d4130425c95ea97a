"""The run directory every task writes: opened (with the check that a resumed run continues the
same data, model and buckets), and the files that describe the run (the resolved config and
the bucket keys). The pipeline adds ``results.json``, the Trainer ``checkpoints/`` and metrics."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nmtbucket.bucketing.keys import LengthKey, key_lengths
from nmtbucket.config import ModelConfig, TrainConfig
from nmtbucket.errors import NmtBucketError
from nmtbucket.files import atomic_write_json
from nmtbucket.training.checkpoint import LAST, PREVIOUS

log = logging.getLogger(__name__)


def open_run_dir(config: TrainConfig) -> Path:
    """``config.run_dir``, created; when it holds a run already, check that ``config`` may
    resume it (``resume=true`` and the same fixed settings)."""
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resuming = holds_training_state(run_dir)
    if resuming and not config.resume:
        raise NmtBucketError(
            f"{run_dir} already holds a training run and resume=false; pick another run_dir "
            "(or name), or set resume=true to continue it"
        )
    if resuming:
        _check_resumable(run_dir, config)
    return run_dir


def holds_training_state(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a training state to resume (``last.pt`` or ``previous.pt``)."""
    return any((run_dir / "checkpoints" / name).exists() for name in (LAST, PREVIOUS))


RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "metrics-*.csv", "tensorboard", "results.json")
"""What a training run writes as it goes (with ``SPLIT.hyp.txt``): set aside when a new run
starts in a folder without a state to resume, so that nothing of the earlier run is mixed in."""


def set_aside_earlier_outputs(run_dir: Path) -> Path | None:
    """Move the outputs an earlier run left in ``run_dir`` without a training state to resume
    (it crashed before its first save, or its states were deleted) into
    ``run_dir/earlier-TIMESTAMP/``, with a warning naming them; that folder, or None when there
    was nothing. Call it when starting a new run, holding the run folder's lock."""
    found = sorted(
        {path for pattern in (*RUN_OUTPUTS, "*.hyp.txt") for path in run_dir.glob(pattern)}
    )
    if not found:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    aside = run_dir / f"earlier-{stamp}"
    for number in itertools.count(2):
        if not aside.exists():
            break
        aside = run_dir / f"earlier-{stamp}-{number}"
    aside.mkdir()
    for path in found:
        path.rename(aside / path.name)
    log.warning(
        "%s holds outputs of an earlier run but no training state to resume (%s): moved them "
        "to %s, so that none of them is mixed with this run's (best checkpoints, averaging, "
        "metrics)",
        run_dir,
        ", ".join(p.name for p in found),
        aside,
    )
    return aside


RESUME_FIXED = ("data", "model", "bucketing")
"""Config sections a resumed run must share with the run it continues (and
``trainer.optimizer``: another optimizer cannot take over the saved one's state)."""


def _check_resumable(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume with other data, model or buckets; warn about other trainer settings
    (limits may change; optimizer settings come from the checkpoint)."""
    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        return
    try:
        saved = upgrade_saved_config(json.loads(saved_path.read_text(encoding="utf-8")))
    except (ValueError, AttributeError) as err:  # torn, or not an object
        raise NmtBucketError(
            f"{saved_path} is not a readable config ({err}); it records the settings this run "
            "started with, to check a resume against. Restore it, or delete it to resume "
            "without that check (it is written again)"
        ) from None
    now = dataclasses.asdict(config)
    fixed = [k for s in RESUME_FIXED for k in _differences(saved.get(s), now[s], f"{s}.")]
    optimizer = now["trainer"]["optimizer"]
    saved_optimizer = saved.get("trainer", {}).get("optimizer", optimizer)
    fixed += _differences(saved_optimizer, optimizer, "trainer.optimizer")
    if fixed:
        raise NmtBucketError(
            f"cannot resume {run_dir}: these settings differ from the run it holds: "
            f"{', '.join(fixed)}; use another run_dir (or name) for a new run"
        )
    changed = _differences(saved.get("trainer"), now["trainer"], "trainer.")
    kept = [c for c in changed if c.split(" ")[0] in FROM_CHECKPOINT]
    applied = [c for c in changed if c not in kept]
    if applied:
        log.warning("resuming with changed %s: these take effect", ", ".join(applied))
    if kept:
        log.warning(
            "resuming with changed %s: no effect, a resumed run keeps the optimizer settings "
            "saved in its checkpoint (the schedule's shape follows the config, applied to the "
            "saved rate); start a new run (another run_dir or name) to change them",
            ", ".join(kept),
        )


FROM_CHECKPOINT = (
    "trainer.lr",
    "trainer.betas",
    "trainer.eps",
    "trainer.weight_decay",
)
"""Trainer settings that a resumed run takes from its checkpoint (the optimizer's state)."""


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
