"""A small progress bar on stderr for long steps (encoding, training, decoding).

On a terminal it redraws one line; elsewhere (CI logs, files) it prints a plain line at most
every ``log_interval`` seconds, so logs stay readable. No dependency beyond the standard library.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


class Progress:
    """Counts work done out of ``total`` (or open-ended when ``total`` is None), starting at
    ``initial`` (a resumed run); the rate counts only the work done since the start.

    ``update(n, key=value, ...)`` advances the count and sets the fields shown after the bar.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        enabled: bool = True,
        unit: str = "it",
        initial: int = 0,
        stream: TextIO | None = None,
        redraw_interval: float = 0.2,
        log_interval: float = 30.0,
    ) -> None:
        self.total = total
        self.desc = desc
        self.enabled = enabled
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.count = initial
        self._initial = initial
        self.fields: dict[str, object] = {}
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = redraw_interval if self._tty else log_interval
        self._start = time.monotonic()
        self._last_draw = -float("inf")

    def update(self, n: int = 1, **fields: object) -> None:
        self.count += n
        self.fields.update(fields)
        now = time.monotonic()
        if self.enabled and now - self._last_draw >= self._interval:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.monotonic())
            if self._tty:
                self.stream.write("\n")
                self.stream.flush()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def render(self, now: float | None = None) -> str:
        """The text of the bar: description, count, percentage, rate, elapsed, fields."""
        elapsed = (time.monotonic() if now is None else now) - self._start
        rate = (self.count - self._initial) / elapsed if elapsed > 0 else 0.0
        if self.total:
            done = min(self.count / self.total, 1.0)
            filled = int(done * 20)
            head = f"{self.desc} [{'#' * filled}{'.' * (20 - filled)}] {self.count}/{self.total}"
            head += f" {100 * done:3.0f}%"
        else:
            head = f"{self.desc} {self.count}"
        head += f" {rate:.1f} {self.unit}/s {_clock(elapsed)}"
        extra = " ".join(f"{k}={_short(v)}" for k, v in self.fields.items())
        return f"{head} {extra}".rstrip()

    def _draw(self, now: float) -> None:
        self._last_draw = now
        line = self.render(now)
        self.stream.write(f"\r{line}\x1b[K" if self._tty else f"{line}\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
