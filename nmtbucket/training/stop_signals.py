"""Stopping on a scheduler's signal. SIGTERM (preemption, ``scancel``) and SIGUSR1 (what SLURM
sends ahead of a time limit with ``--signal=USR1@90``) ask the trainer to finish the current
update, save its full state and exit with :data:`EXIT_INTERRUPTED`; rerunning the same command
continues from there. A second signal ends the process at once: every file is written
atomically, so that loses the updates since the last save and corrupts nothing."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from nmtbucket.errors import NmtBucketError

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: a temporary failure, to be retried (rerun to continue)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class TrainingInterrupted(NmtBucketError):
    """Training stopped on a signal after saving its state; the same command continues it."""


class StopSignals:
    """Within ``with``, the first of :data:`STOP_SIGNALS` is noted in :attr:`received` (its
    name) and a second one kills the process. Handlers can only be installed from the main
    thread; elsewhere the signals keep their handlers."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self.received is not None:  # the second one: at once, by the signal itself
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
            return
        self.received = name
        log.warning(
            "%s received: finishing this update, saving the state, then exiting (send it again "
            "to exit at once, losing the updates since the last save)",
            name,
        )
