"""Named fault points, for the fault-injection tests only: each place where a crash or a full
disk must lose nothing calls :func:`fault_point` with its name. Nothing happens unless the
environment variable ``NMTBUCKET_FAULT`` names that point (it is unset outside those tests):

    NMTBUCKET_FAULT=POINT:N[:ACTION]

makes the N-th time (from 1) this process reaches ``POINT`` fail with ``ACTION``: ``kill``
(the default; the process SIGKILLs itself, as a preemption or the OOM killer would) or
``enospc`` (the write there fails as on a full disk). Points inside a file write are named
``POINT@FILE NAME`` (``before_rename@last.pt``), so a test can fail one file's n-th write."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable

ENVIRONMENT_VARIABLE = "NMTBUCKET_FAULT"
ACTIONS = ("kill", "enospc")

_reached: dict[str, int] = {}  # point -> times reached in this process, counted only when armed


def fault_point(name: str, before_kill: Callable[[], object] | None = None) -> None:
    """Fail here if ``NMTBUCKET_FAULT`` names ``name`` and this is its n-th visit; otherwise
    (always, outside the tests) do nothing. ``before_kill`` runs just before a kill: what a
    process cut short at this point would have left (half a line, say)."""
    armed = os.environ.get(ENVIRONMENT_VARIABLE)
    if not armed:
        return
    point, count, action = _parse(armed)
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] != count:
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if before_kill is not None:
        before_kill()
    os.kill(os.getpid(), signal.SIGKILL)


def _parse(armed: str) -> tuple[str, int, str]:
    point, count, *action = armed.split(":")
    if (
        not point
        or not count.isdigit()
        or int(count) < 1
        or len(action) > 1
        or (action and action[0] not in ACTIONS)
    ):
        raise ValueError(
            f"{ENVIRONMENT_VARIABLE}={armed!r}: expected POINT:N[:ACTION] with N >= 1 and ACTION "
            f"one of {ACTIONS}"
        )
    return point, int(count), action[0] if action else "kill"
