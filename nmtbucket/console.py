"""Progress bars on stderr for long steps (encoding, training, decoding), through tqdm.

On a terminal a bar redraws in place. Elsewhere (CI logs, files, a pipe) its output becomes one
plain line at most every :data:`LOG_INTERVAL` seconds, without carriage returns, so that logs
stay readable."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between plain lines when the stream is not a terminal


def progress_bar(
    total: int | None,
    desc: str,
    *,
    enabled: bool = True,
    unit: str = "it",
    initial: int = 0,
    stream: TextIO | None = None,
    log_interval: float = LOG_INTERVAL,
) -> tqdm[Any]:
    """A tqdm bar counting ``unit`` out of ``total`` (open-ended when None) from ``initial`` (a
    resumed run; the rate counts only the work since the start). Show fields after it with
    ``set_postfix(..., refresh=False)`` before ``update``."""
    stream = sys.stderr if stream is None else stream
    terminal = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=not enabled,
        file=stream if terminal else _PlainLines(stream),
        mininterval=0.2 if terminal else log_interval,
        maxinterval=max(10.0, log_interval),
        dynamic_ncols=terminal,
        ascii=not terminal,
    )


class _PlainLines:
    """What tqdm writes, as plain lines: each redraw (``\\r`` and the bar) becomes a line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()
