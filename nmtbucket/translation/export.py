"""A trained run exported for sharing and serving: one folder with ``model.safetensors`` (the
chosen, possibly averaged, weights of the encoder-decoder; no pickle anywhere), ``config.json``,
``buckets.json`` and the sentencepiece models. :class:`~nmtbucket.translation.translator.
Translator` loads such a folder as it loads a run directory, without ``torch.load``.
safetensors is an optional extra (``pip install 'nmtbucket[export]'``)."""

from __future__ import annotations

import os
from pathlib import Path

from nmtbucket.errors import NmtBucketError
from nmtbucket.files import atomic_copy
from nmtbucket.translation.run_folder import REQUIRED_FILES, WEIGHTS_FILE, RunFolder

INSTALL = "pip install 'nmtbucket[export]'"


def new_output_folder(output: str | Path) -> Path:
    """``output`` as a path, checked to be new or an empty folder (an export never mixes its
    files with others)."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise NmtBucketError(f"{output} exists and is not an empty folder; choose a new one")
    return output


def export_safetensors(
    run_dir: str | Path, output: str | Path, weights: str = "best", average: int = 1
) -> Path:
    """Write the export folder ``output`` (new, or empty) of the run ``run_dir`` with the
    weights ``weights`` and ``average`` choose (as for translation); returns ``output``."""
    try:
        from safetensors.torch import save_model
    except ImportError:
        raise NmtBucketError(f"exporting to safetensors needs safetensors: {INSTALL}") from None
    folder = RunFolder.open(run_dir)
    if folder.exported:
        raise NmtBucketError(f"{folder.path} is an export already; export a run directory")
    output = new_output_folder(output)
    core = folder.build_model(weights, average)
    output.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES:
        atomic_copy(folder.path / name, output / name)
    temporary = output / f".{WEIGHTS_FILE}.tmp"
    save_model(core, str(temporary))  # shared (tied) tensors are stored once
    os.replace(temporary, output / WEIGHTS_FILE)  # the last file: a complete export has it
    return output
