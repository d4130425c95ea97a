"""Metric records of a run: one row per log or validation event, appended to ``metrics.jsonl``
(or ``metrics.csv``) in the run directory, and to TensorBoard when it is installed."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any, TextIO

from nmtbucket.config import CHOICES
from nmtbucket.errors import NmtBucketError
from nmtbucket.faults import fault_point
from nmtbucket.files import appending, atomic_write_text

log = logging.getLogger(__name__)

FORMATS = CHOICES["trainer.metrics_format"]


def _write_now(file: TextIO, text: str) -> None:
    file.write(text)
    file.flush()


def _update_column(header: str) -> int:
    """The position of the ``update`` column in a metrics CSV header line."""
    names = next(csv.reader([header]), [])
    return names.index("update") if "update" in names else 1


def _row_update(line: str, csv_column: int | None) -> int | None:
    """The update a whole metrics row (JSON, or CSV with its update in ``csv_column``) was
    logged at; None for a torn or foreign line."""
    if not line.endswith("\n"):
        return None  # the append was cut short
    try:
        if csv_column is None:
            value = json.loads(line)["update"]
        else:
            value = next(csv.reader([line]))[csv_column]
        return int(value)
    except (ValueError, KeyError, TypeError, IndexError, StopIteration):
        return None


class MetricsLogger:
    """Appends metric rows; a resumed run appends to the same file.

    Every row has ``kind`` (``train``, ``valid`` or ``test``) and ``update``; the other fields
    are numbers or strings. Each kind has its own CSV file (``metrics-train.csv``,
    ``metrics-valid.csv``, ...), whose columns are those of its first row, widened when a later
    row has a field more. With ``writes`` False (ranks other than 0) nothing is written.
    """

    def __init__(
        self,
        run_dir: str | Path,
        fmt: str = "jsonl",
        tensorboard: bool = True,
        writes: bool = True,
    ) -> None:
        if fmt not in FORMATS:
            raise NmtBucketError(f"trainer.metrics_format must be one of {FORMATS}, got {fmt!r}")
        self.run_dir = Path(run_dir)
        self.format = fmt
        self.writes = writes
        self._writer = None
        if writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                self._writer = _tensorboard_writer(self.run_dir / "tensorboard")

    def log(self, kind: str, update: int, **values: Any) -> None:
        if not self.writes:
            return
        row = {"kind": kind, "update": update, **{k: _plain(v) for k, v in values.items()}}
        if self.format == "jsonl":
            line = json.dumps(row) + "\n"
            with appending(self.run_dir / "metrics.jsonl") as file:
                fault_point("metrics_append", lambda: _write_now(file, line[:9]))  # torn row
                file.write(line)
        else:
            self._append_csv(self.run_dir / f"metrics-{kind}.csv", row)
        if self._writer is not None:
            for name, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{kind}/{name}", value, update)
            self._writer.flush()

    def forget_after(self, update: int) -> None:
        """Drop rows logged after ``update``: a resumed run logs those updates again. The files
        are rewritten atomically. A torn last row (a process killed mid-append: partial, blank
        or NUL-filled) is dropped with a warning; a bad row before it is an error naming the
        file and line."""
        if not self.writes:
            return
        paths = [self.run_dir / "metrics.jsonl", *self.run_dir.glob("metrics-*.csv")]
        for path in paths:
            if not path.is_file():
                continue
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
            header = lines[:1] if path.suffix == ".csv" else []
            column = _update_column(lines[0]) if header else None
            kept = list(header)
            for number, line in enumerate(lines[len(header) :], start=len(header) + 1):
                logged = _row_update(line, column)
                if logged is None and number == len(lines):
                    log.warning("%s:%d: dropped a torn last row (%r)", path, number, line[:40])
                elif logged is None:
                    raise NmtBucketError(
                        f"{path}:{number}: not a metrics row ({line[:60]!r}); remove or repair "
                        "that line, then rerun to resume"
                    )
                elif logged <= update:
                    kept.append(line)
            atomic_write_text(path, "".join(kept))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    @staticmethod
    def _append_csv(path: Path, row: dict[str, Any]) -> None:
        """Append ``row``; a field the file has no column for (a run resumed by a newer
        version) widens the header, keeping every row already written."""
        exists = path.is_file() and path.stat().st_size > 0
        columns: list[str] = []
        if exists:
            with path.open(encoding="utf-8", newline="") as existing:
                columns = next(csv.reader(existing))
        if exists and set(row) <= set(columns):
            with appending(path) as file:
                csv.DictWriter(file, fieldnames=columns).writerow(row)
            return
        rows: list[dict[str, Any]] = []
        if exists:
            with path.open(encoding="utf-8", newline="") as existing:
                rows = list(csv.DictReader(existing))
        columns += [name for name in row if name not in columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows([*rows, row])
        atomic_write_text(path, text.getvalue())


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every whole row of a run's ``metrics.jsonl``, in order: a torn last row (a process
    killed mid-append) is left out, a bad row before it is an error naming the line."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    rows = []
    for number, line in enumerate(lines, start=1):
        if _row_update(line, None) is not None:
            rows.append(json.loads(line))
        elif number < len(lines):
            raise NmtBucketError(f"{path}:{number}: not a metrics row ({line[:60]!r})")
    return rows


def _plain(value: Any) -> Any:
    """JSON has no NaN or infinity: write those as strings so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _tensorboard_writer(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(directory))
