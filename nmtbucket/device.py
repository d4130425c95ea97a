"""Turning a ``device`` option (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a torch device."""

from __future__ import annotations

import torch

from nmtbucket.errors import NmtBucketError


def resolve_device(name: str, option: str = "trainer.device") -> torch.device:
    """``auto`` is CUDA when available, else the CPU; an unavailable CUDA device is an error
    naming ``option``, the setting the value came from."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NmtBucketError(
            f"{option}={name} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NmtBucketError(f"{option}={name} but CUDA is not available; use cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise NmtBucketError(
            f"{option}={name} but this machine has {torch.cuda.device_count()} CUDA device(s); "
            "use cuda:0 .. cuda:N-1, or auto"
        )
    return device
