"""Files written atomically (temporary file, fsync, rename): a crash leaves either the old
file or the new one, never half of one; the temporary file a killed writer leaves behind is
recognisable (``.NAME.XXXXXXXX.tmp``) and removed by :func:`remove_leftover_temp_files`."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from nmtbucket.errors import NmtBucketError
from nmtbucket.faults import fault_point


class DiskFull(NmtBucketError):
    """A write failed for want of space: a full disk, a quota or a file-size limit."""


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextmanager
def atomic_writer(path: str | Path, previous: str | Path | None = None) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through, in as many pieces as needed: a temporary file
    beside ``path`` that is fsynced and renamed over it when the block ends without an error,
    and removed when it ends with one. Until then ``path`` keeps its old content (or does not
    exist), so it is never seen half-written.

    With ``previous``, the old ``path`` is first renamed to ``previous`` (once the new content
    is safely on disk), so two whole versions are kept. A failure for want of space raises
    :class:`DiskFull`, saying how much is needed; the old file is untouched."""
    path = Path(path)
    temp_name = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
        )
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            fault_point(f"before_fsync@{path.name}")
            os.fsync(file.fileno())
        fault_point(f"before_rename@{path.name}")
        if previous is not None and path.exists():
            os.replace(path, previous)
            fault_point(f"between_renames@{path.name}")
        os.replace(temp_name, path)
    except BaseException as err:
        written = _size(Path(temp_name)) if temp_name else 0
        if temp_name:
            Path(temp_name).unlink(missing_ok=True)
        if _no_space(err):
            raise DiskFull(_disk_full_message(path, written)) from None
        raise
    fault_point(f"before_directory_fsync@{path.name}")
    _fsync_directory(path.parent)


@contextmanager
def appending(path: str | Path) -> Iterator[TextIO]:
    """``path`` opened to append UTF-8 text (created when missing), a failure for want of
    space raised as :class:`DiskFull`. A crash mid-append leaves a torn last line, which
    readers of such files drop."""
    try:
        with Path(path).open("a", encoding="utf-8", newline="") as file:
            yield file
    except OSError as err:
        if _no_space(err):
            raise DiskFull(_disk_full_message(Path(path), None)) from None
        raise


def _no_space(err: BaseException | None) -> bool:
    """Whether ``err``, or an error it was raised from (``torch.save`` wraps the OSError of
    its write), is a full disk, a quota or a file-size limit."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return True
        err = err.__cause__ or err.__context__
    return False


def _disk_full_message(path: Path, written: int | None) -> str:
    """What a write of ``path`` that failed for want of space after ``written`` bytes (None:
    an append) needs, and what there is."""
    old = _size(path)
    if written is None:
        needs = ""
    elif old and old >= written:
        needs = f"; it needs about {_megabytes(old)} (the size of the version it replaces)"
    else:
        needs = f"; it needs more than {_megabytes(written)} (what was written before the failure)"
    free = shutil.disk_usage(path.parent).free
    unchanged = f"The previous {path.name} is unchanged. " if written is not None and old else ""
    return (
        f"cannot write {path}: no space left (a full disk, a quota or a file-size limit such "
        f"as ulimit -f){needs}, and {path.parent} has {_megabytes(free)} free. {unchanged}"
        "Free some space (or raise the limit) and rerun the same command to continue"
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


TEMP_SUFFIX = ".tmp"
TEMP_FILE_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what mkstemp makes of the prefix


def remove_leftover_temp_files(directory: str | Path) -> list[Path]:
    """Delete the temporary files of :func:`atomic_writer` in ``directory`` (not below it) that a
    killed process left behind; returns them. Only call it while no writer can be working there
    (a run folder holds its lock)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    leftovers = [p for p in directory.iterdir() if p.is_file() and TEMP_FILE_NAME.match(p.name)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return sorted(leftovers)


def atomic_write_bytes(path: str | Path, write: Any, previous: str | Path | None = None) -> None:
    """Call ``write(file)`` on a binary file that replaces ``path`` atomically (see
    :func:`atomic_writer`, also for ``previous``): a crash leaves either the old file or the
    new one."""
    with atomic_writer(path, previous) as file:
        write(file)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, lambda file: file.write(text.encode("utf-8")))


def atomic_copy(source: str | Path, destination: str | Path) -> None:
    """Copy the file ``source`` to ``destination`` atomically."""
    with Path(source).open("rb") as file:
        atomic_write_bytes(destination, lambda out: shutil.copyfileobj(file, out))


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of the bytes of ``path``, in hex: what identifies a corpus or model file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
