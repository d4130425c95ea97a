"""A training run's folder read back as a self-contained translation checkpoint: the model
config, the sentencepiece models, the bucket keys and the weights (one checkpoint, or the mean of
the best or last K), everything ``nmtbucket-train`` wrote and nothing else."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nmtbucket.bucketing.keys import LengthPair
from nmtbucket.config import EARLY_STOPPING_METRICS, ModelConfig
from nmtbucket.data.tokenizer import SentencePieceTokenizer
from nmtbucket.errors import NmtBucketError
from nmtbucket.models import build_seq2seq
from nmtbucket.models.base import Seq2Seq
from nmtbucket.training.checkpoint import average_weights
from nmtbucket.training.kept_checkpoints import KeptCheckpoints

REQUIRED_FILES = ("config.json", "buckets.json", "src.spm.model", "tgt.spm.model")
WEIGHTS_FILE = "model.safetensors"  # the weights of an exported folder (nmtbucket-export)


@dataclass(frozen=True)
class RunFolder:
    """The files of one run directory. Open it with :meth:`open`."""

    path: Path
    config: dict[str, Any]  # config.json: the resolved training config
    buckets: tuple[LengthPair, ...]  # the training keys, smallest first

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """Check that ``path`` holds every file translation needs and read the small ones."""
        folder = Path(path)
        if not folder.is_dir():
            raise NmtBucketError(
                f"checkpoint folder not found: {folder}; pass the run directory that "
                "nmtbucket-train wrote (runs/NAME)"
            )
        missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise NmtBucketError(
                f"{folder} is not a complete nmtbucket run: {', '.join(missing)} missing "
                f"(a run directory holds {', '.join(REQUIRED_FILES)} and checkpoints/)"
            )
        config = _read_json(folder / "config.json")
        rows = _read_json(folder / "buckets.json")
        try:
            buckets = tuple(sorted(LengthPair(int(r[0]), int(r[1])) for r in rows))
        except (TypeError, ValueError, IndexError, KeyError):
            raise NmtBucketError(
                f"{folder / 'buckets.json'} is not a list of [src_len, tgt_len, batch_size] rows"
            ) from None
        if not buckets:
            raise NmtBucketError(f"{folder / 'buckets.json'} lists no bucket keys")
        return cls(folder, config, buckets)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def exported(self) -> bool:
        """Whether this is an export (``model.safetensors``) rather than a run directory."""
        return (self.path / WEIGHTS_FILE).is_file()

    def model_config(self) -> ModelConfig:
        """The ``model`` section of config.json as a :class:`ModelConfig`."""
        section = self.config.get("model")
        known = {f.name for f in fields(ModelConfig)}
        if not isinstance(section, dict) or not set(section) <= known:
            raise NmtBucketError(
                f"{self.path / 'config.json'} has no valid 'model' section (keys "
                f"{sorted(section) if isinstance(section, dict) else section}); was it written "
                "by this version of nmtbucket-train?"
            )
        return ModelConfig(**section)

    def tokenizers(self) -> tuple[SentencePieceTokenizer, SentencePieceTokenizer]:
        """The source and target sentencepiece models (the same file content when joint)."""
        return (
            SentencePieceTokenizer(self.path / "src.spm.model"),
            SentencePieceTokenizer(self.path / "tgt.spm.model"),
        )

    def kept_checkpoints(self) -> KeptCheckpoints:
        """The run's kept checkpoints, ranked by its early-stopping metric."""
        metric = self.config.get("trainer", {}).get("early_stopping_metric", "bleu")
        return KeptCheckpoints(self.checkpoints, EARLY_STOPPING_METRICS.get(metric, True))

    def best_paths(self) -> list[Path]:
        """The kept best checkpoints, best first (by the run's early-stopping metric)."""
        return self.kept_checkpoints().best_paths()

    def snapshot_paths(self) -> list[Path]:
        """The kept weight snapshots (``trainer.keep_last``), newest first."""
        return self.kept_checkpoints().snapshot_paths()

    def weight_paths(self, weights: str = "best", average: int = 1) -> list[Path]:
        """The checkpoint files to load (and average); see :meth:`KeptCheckpoints.weight_paths`."""
        return self.kept_checkpoints().weight_paths(weights, average)

    def build_model(self, weights: str = "best", average: int = 1) -> Seq2Seq[Any]:
        """The encoder-decoder of this run with the chosen (possibly averaged) weights, on the
        CPU in eval mode. Weights that do not fit the model config are a clear error."""
        src_tokenizer, tgt_tokenizer = self.tokenizers()
        core = build_seq2seq(
            self.model_config(), src_tokenizer.vocab_size, tgt_tokenizer.vocab_size
        )
        if self.exported:
            return self._load_exported(core, weights, average)
        paths = self.weight_paths(weights, average)
        state = average_weights(paths)
        # The trainer saves a BucketingModule: the core sits under its default keyed module.
        prefix = "default_module.core."
        state = {k.removeprefix(prefix): v for k, v in state.items()}
        try:
            core.load_state_dict(state)
        except RuntimeError as err:
            raise NmtBucketError(
                f"the weights in {', '.join(str(p) for p in paths)} do not fit the model that "
                f"{self.path / 'config.json'} describes: {_first_line(err)}; was config.json "
                "edited, or do the checkpoints come from another run?"
            ) from None
        return core.eval()

    def _load_exported(self, core: Seq2Seq[Any], weights: str, average: int) -> Seq2Seq[Any]:
        """``core`` with the weights of ``model.safetensors`` (no pickle is read)."""
        if weights != "best" or average != 1:
            raise NmtBucketError(
                f"{self.path} is an export with one set of weights ({WEIGHTS_FILE}): leave "
                "weights and average at their defaults (choose them when exporting)"
            )
        try:
            from safetensors.torch import load_model
        except ImportError:
            raise NmtBucketError(
                f"loading {self.path / WEIGHTS_FILE} needs safetensors: pip install "
                "'nmtbucket[export]'"
            ) from None
        try:
            load_model(core, str(self.path / WEIGHTS_FILE))
        except Exception as err:  # safetensors raises several types for bad or foreign files
            raise NmtBucketError(
                f"cannot load {self.path / WEIGHTS_FILE} into the model that "
                f"{self.path / 'config.json'} describes: {_first_line(err)}"
            ) from None
        return core.eval()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NmtBucketError(f"{path} is not valid JSON: {err}") from None


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:3])
