"""Metric files (JSONL and CSV) and progress bars in logs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from nmtbucket.console import progress_bar
from nmtbucket.errors import NmtBucketError
from nmtbucket.training.metrics import MetricsLogger, read_metrics


def test_jsonl_rows_append_across_loggers(tmp_path: Path) -> None:
    first = MetricsLogger(tmp_path, "jsonl", tensorboard=False)
    first.log("train", 10, loss=2.5, lr=0.001)
    first.close()
    second = MetricsLogger(tmp_path, "jsonl", tensorboard=False)  # a resumed run
    second.log("valid", 20, bleu=12.0, perplexity=float("inf"))
    rows = read_metrics(tmp_path)
    assert rows == [
        {"kind": "train", "update": 10, "loss": 2.5, "lr": 0.001},
        {"kind": "valid", "update": 20, "bleu": 12.0, "perplexity": "inf"},
    ]


def test_csv_has_one_file_per_kind_with_a_header(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, "csv", tensorboard=False)
    logger.log("train", 1, loss=3.0)
    logger.log("train", 2, loss=2.0)
    logger.log("valid", 2, bleu=5.0)
    with (tmp_path / "metrics-train.csv").open() as file:
        assert list(csv.DictReader(file)) == [
            {"kind": "train", "update": "1", "loss": "3.0"},
            {"kind": "train", "update": "2", "loss": "2.0"},
        ]
    assert (tmp_path / "metrics-valid.csv").read_text().splitlines()[0] == "kind,update,bleu"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_rows_after_a_resumed_update_are_forgotten(tmp_path: Path, fmt: str) -> None:
    logger = MetricsLogger(tmp_path, fmt, tensorboard=False)
    for update in (1, 2, 3):
        logger.log("train", update, loss=float(update))
    logger.forget_after(2)
    logger.log("train", 3, loss=0.5)  # the resumed run's row for update 3
    if fmt == "jsonl":
        rows = [(r["update"], r["loss"]) for r in read_metrics(tmp_path)]
    else:
        with (tmp_path / "metrics-train.csv").open() as file:
            rows = [(int(r["update"]), float(r["loss"])) for r in csv.DictReader(file)]
    assert rows == [(1, 1.0), (2, 2.0), (3, 0.5)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("tail", ['{"kind": "tr', "\n", "\0" * 30, "train,3,0."])
def test_a_torn_last_row_is_dropped_on_resume(tmp_path: Path, fmt: str, tail: str) -> None:
    logger = MetricsLogger(tmp_path, fmt, tensorboard=False)
    for update in (1, 2):
        logger.log("train", update, loss=float(update))
    path = tmp_path / ("metrics.jsonl" if fmt == "jsonl" else "metrics-train.csv")
    with path.open("a") as file:
        file.write(tail)  # a process killed in the middle of an append
    if fmt == "jsonl":  # a reader leaves the torn row out
        assert [r["update"] for r in read_metrics(tmp_path)] == [1, 2]
    logger.forget_after(2)
    logger.log("train", 3, loss=0.5)
    if fmt == "jsonl":
        rows = [(r["update"], r["loss"]) for r in read_metrics(tmp_path)]
    else:
        with path.open() as file:
            rows = [(int(r["update"]), float(r["loss"])) for r in csv.DictReader(file)]
    assert rows == [(1, 1.0), (2, 2.0), (3, 0.5)]


def test_a_bad_row_before_the_last_is_an_error_naming_the_line(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, "jsonl", tensorboard=False)
    logger.log("train", 1, loss=1.0)
    path = tmp_path / "metrics.jsonl"
    path.write_text(path.read_text() + "garbage\n" + path.read_text())
    with pytest.raises(NmtBucketError, match=r"metrics\.jsonl:2: not a metrics row"):
        logger.forget_after(5)


def test_unknown_format_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NmtBucketError, match=r"trainer\.metrics_format must be one of"):
        MetricsLogger(tmp_path, "parquet")


def test_a_bar_in_a_log_is_plain_lines_with_its_fields() -> None:
    stream = io.StringIO()  # not a terminal: a plain line per redraw, no carriage returns
    bar = progress_bar(4, "train", stream=stream, unit="upd", log_interval=0.0)
    bar.set_postfix(loss=2.3456, key=(7, 9), refresh=False)
    bar.update(1)
    bar.update(1)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert any(line.startswith("train:  25%") and "1/4" in line for line in lines), lines
    assert "loss=2.35" in text and "key=(7, 9)" in text
    assert "2/4" in lines[-1]


def test_a_resumed_bar_starts_at_its_initial_count() -> None:
    stream = io.StringIO()
    bar = progress_bar(10, "train", stream=stream, initial=6, log_interval=0.0)
    bar.update(1)
    bar.close()
    assert "7/10" in stream.getvalue()


def test_a_disabled_bar_writes_nothing() -> None:
    stream = io.StringIO()
    with progress_bar(None, "x", enabled=False, stream=stream) as bar:
        bar.update(5)
    assert stream.getvalue() == ""


def test_a_csv_row_with_a_new_field_widens_the_header_and_keeps_the_rows(tmp_path: Path) -> None:
    older = MetricsLogger(tmp_path, "csv", tensorboard=False)  # as an older version wrote it
    older.log("train", 10, label_smoothed_loss=2.5)
    resumed = MetricsLogger(tmp_path, "csv", tensorboard=False)
    resumed.log("train", 20, train_loss=2.0)
    resumed.log("train", 30, train_loss=1.5)
    with (tmp_path / "metrics-train.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["update"] for r in rows] == ["10", "20", "30"]
    assert [r["label_smoothed_loss"] for r in rows] == ["2.5", "", ""]
    assert [r["train_loss"] for r in rows] == ["", "2.0", "1.5"]
