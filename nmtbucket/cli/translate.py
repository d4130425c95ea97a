"""CLI ``nmtbucket-translate``: compose ``conf/translate.yaml`` with the command-line overrides,
read sentences from a file or stdin, translate them with a run directory's model and write one
line per input line (or ``nbest`` lines in ``index ||| text ||| score`` form) to a file or
stdout. Logs, warnings and scores go to stderr only."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from nmtbucket.cli.typed_config import to_typed_config
from nmtbucket.config import TranslateConfig
from nmtbucket.data.corpus import read_lines
from nmtbucket.errors import NmtBucketError
from nmtbucket.files import atomic_write_text
from nmtbucket.translation.scores import translation_scores
from nmtbucket.translation.translator import Translation, Translator

log = logging.getLogger(__name__)

ConfigStore.instance().store(name="translate_schema", node=TranslateConfig)

STDIO = (None, "-")


def run_translate(config: TranslateConfig) -> None:
    """Translate as ``config`` says (see :class:`TranslateConfig`)."""
    if not config.checkpoint:
        raise NmtBucketError(
            "checkpoint is required: add checkpoint=RUN_DIR, a run directory that "
            "nmtbucket-train wrote (runs/NAME)"
        )
    if config.nbest < 1:
        raise NmtBucketError(f"nbest must be at least 1, got {config.nbest}")
    lines = _read_input(config.input)
    references = None if config.reference is None else read_lines(config.reference)
    if references is not None and len(references) != len(lines):
        raise NmtBucketError(
            f"the reference {config.reference} has {len(references)} lines but the input "
            f"{config.input or 'stdin'} has {len(lines)}; they must be parallel"
        )
    translator = Translator.from_checkpoint(
        config.checkpoint,
        weights=config.weights,
        average=config.average,
        search=config.search,
        device=config.device,
        progress=config.progress,
    )
    started = time.monotonic()
    results = translator.translate_nbest(lines, config.nbest)
    seconds = time.monotonic() - started
    _write_output(config.output, format_output(results, config.nbest))
    log.info(
        "translated %d lines in %.1f s (%.1f sentences/s) with beam %d on %s; %d truncated",
        len(lines),
        seconds,
        len(lines) / max(seconds, 1e-9),
        config.search.beam_size,
        translator.device,
        translator.truncated_lines,
    )
    if references is not None:
        scores = translation_scores([r[0].text for r in results], references)
        print(f"BLEU {scores.bleu:.2f}  chrF {scores.chrf:.2f}", file=sys.stderr)
        print(f"  {scores.bleu_signature}\n  {scores.chrf_signature}", file=sys.stderr)


def format_output(results: Sequence[Sequence[Translation]], nbest: int) -> str:
    """One line per input with ``nbest`` 1; else Moses-style ``index ||| text ||| score`` lines
    (index from 0), ``nbest`` per input, best first. A line break inside a translation (a
    target vocabulary could hold one) becomes a space, so lines stay aligned with the input."""
    if nbest == 1:
        return "".join(f"{_one_line(hypotheses[0].text)}\n" for hypotheses in results)
    return "".join(
        f"{index} ||| {_one_line(h.text)} ||| {h.score:.6f}\n"
        for index, hypotheses in enumerate(results)
        for h in hypotheses
    )


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _read_input(path: str | None) -> list[str]:
    if path not in STDIO:
        return read_lines(path)
    data = sys.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise NmtBucketError(
            f"stdin:{line}: invalid UTF-8 ({data[err.start : err.start + 4]!r}); the input must "
            "be UTF-8 text"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":  # the final newline ends the last line; it does not start another
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _write_output(path: str | None, text: str) -> None:
    if path in STDIO:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(path, text)  # an existing file is replaced only once all is done


@hydra.main(version_base=None, config_path="pkg://nmtbucket.conf", config_name="translate")
def main(cfg: DictConfig) -> None:
    """Entry point of ``nmtbucket-translate``; a user error ends with its message and status 1."""
    with _logging_to_stderr():
        try:
            run_translate(to_typed_config(cfg, TranslateConfig))
        except NmtBucketError as err:
            print(f"nmtbucket-translate: error: {err}", file=sys.stderr)
            sys.exit(1)


@contextmanager
def _logging_to_stderr() -> Iterator[None]:
    """Send nmtbucket's log records to stderr only, whatever handlers the process already has
    (stdout carries the translations); restore the logger afterwards."""
    logger = logging.getLogger("nmtbucket")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


if __name__ == "__main__":
    main()
