"""The lock a training run holds on its run directory, so that a second training on the same
folder (a requeued job, a double submit) stops at once instead of overwriting and pruning the
first one's files. It is an ``flock`` on ``run_dir/.lock``: the kernel releases it when the
holder exits or is killed, so a crash never leaves a stale lock."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from nmtbucket.errors import NmtBucketError

LOCK_FILE = ".lock"


class RunDirectoryInUse(NmtBucketError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """Holds ``run_dir``'s lock from :meth:`acquire` (or ``with``) until :meth:`release` or the
    end of the process. The lock file names the holder (PID and host) for the error message."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunDirectoryInUse` naming its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "an unknown process"
            os.close(fd)
            raise RunDirectoryInUse(
                f"{self.path.parent} is in use by another training ({holder}); wait for it to "
                "finish or stop it, or give this run another run_dir (or name)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()
