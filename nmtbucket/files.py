"""Files written atomically (temporary file, fsync, rename): a crash leaves either the old
file or the new one, never half of one; the temporary file a killed writer leaves behind is
recognisable (``.NAME.XXXXXXXX.tmp``) and removed by :func:`remove_leftover_temp_files`."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through, in as many pieces as needed: a temporary file
    beside ``path`` that is fsynced and renamed over it when the block ends without an error,
    and removed when it ends with one. Until then ``path`` keeps its old content (or does not
    exist), so it is never seen half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
    )
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what mkstemp makes of the prefix above


def remove_leftover_temp_files(directory: str | Path) -> list[Path]:
    """Delete the temporary files of :func:`atomic_writer` in ``directory`` (not below it) that a
    killed process left behind; returns them. Only call it while no writer can be working there
    (a run folder holds its lock)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    leftovers = [p for p in directory.iterdir() if p.is_file() and _TEMP_NAME.match(p.name)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return sorted(leftovers)


def atomic_write_bytes(path: str | Path, write: Any) -> None:
    """Call ``write(file)`` on a binary file that replaces ``path`` atomically (see
    :func:`atomic_writer`): a crash leaves either the old file or the new one."""
    with atomic_writer(path) as file:
        write(file)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, lambda file: file.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
