"""CLI ``nmtbucket-translate``: compose ``conf/translate.yaml`` with the command-line overrides,
read sentences from a file or stdin ``buffer_lines`` at a time, translate them with a run
directory's model and write one line per input line (or ``nbest`` lines in
``index ||| text ||| score`` form) to a file or stdout, chunk by chunk. Logs, warnings and
scores go to stderr only."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from nmtbucket.cli.typed_config import to_typed_config
from nmtbucket.config import TranslateConfig
from nmtbucket.data.corpus import decode_lines, read_lines
from nmtbucket.errors import NmtBucketError
from nmtbucket.files import atomic_writer
from nmtbucket.translation.scores import translation_scores
from nmtbucket.translation.translator import Translation, Translator

log = logging.getLogger(__name__)

ConfigStore.instance().store(name="translate_schema", node=TranslateConfig)

STDIO = (None, "-")


def run_translate(config: TranslateConfig) -> None:
    """Translate as ``config`` says (see :class:`TranslateConfig`): the input is read
    ``config.buffer_lines`` lines at a time and each chunk's translations are written before
    the next chunk is read."""
    if not config.checkpoint:
        raise NmtBucketError(
            "checkpoint is required: add checkpoint=RUN_DIR, a run directory that "
            "nmtbucket-train wrote (runs/NAME)"
        )
    if config.nbest < 1:
        raise NmtBucketError(f"nbest must be at least 1, got {config.nbest}")
    if config.buffer_lines < 1:
        raise NmtBucketError(f"buffer_lines must be at least 1, got {config.buffer_lines}")
    if config.input not in STDIO and not Path(str(config.input)).is_file():
        raise NmtBucketError(f"input file not found: {config.input}")
    references = None if config.reference is None else read_lines(config.reference)
    if references is not None and config.input not in STDIO:
        _check_parallel(config, len(references), count_lines(config.input))
    translator = Translator.from_checkpoint(
        config.checkpoint,
        weights=config.weights,
        average=config.average,
        search=config.search,
        device=config.device,
        progress=config.progress,
    )
    started = time.monotonic()
    best: list[str] = []  # the best translations, kept only to score them
    lines = truncated = 0
    with _input_lines(config.input) as source, _output(config.output) as write:
        chunks = translator.translate_chunks(source, config.nbest, config.buffer_lines)
        for chunk, results in chunks:
            if references is not None and lines + len(chunk) > len(references):
                _check_parallel(config, len(references), lines + len(chunk))
            write(format_output(results, config.nbest, first_index=lines))
            lines += len(chunk)
            truncated += translator.truncated_lines
            if references is not None:
                best.extend(hypotheses[0].text for hypotheses in results)
            if lines > len(chunk):
                log.info("%d lines translated so far", lines)
    seconds = time.monotonic() - started
    log.info(
        "translated %d lines in %.1f s (%.1f sentences/s) with beam %d on %s; %d truncated",
        lines,
        seconds,
        lines / max(seconds, 1e-9),
        config.search.beam_size,
        translator.device,
        truncated,
    )
    if references is not None:
        _check_parallel(config, len(references), lines)
        scores = translation_scores(best, references)
        print(f"BLEU {scores.bleu:.2f}  chrF {scores.chrf:.2f}", file=sys.stderr)
        print(f"  {scores.bleu_signature}\n  {scores.chrf_signature}", file=sys.stderr)


def _check_parallel(config: TranslateConfig, reference_lines: int, input_lines: int) -> None:
    if reference_lines != input_lines:
        raise NmtBucketError(
            f"the reference {config.reference} has {reference_lines} lines but the input "
            f"{config.input or 'stdin'} has {input_lines}; they must be parallel"
        )


def count_lines(path: str) -> int:
    """Lines in the file ``path`` as :func:`read_lines` counts them, read in blocks."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def format_output(
    results: Sequence[Sequence[Translation]], nbest: int, first_index: int = 0
) -> str:
    """One line per input with ``nbest`` 1; else Moses-style ``index ||| text ||| score`` lines
    (index from ``first_index``), ``nbest`` per input, best first. A line break inside a
    translation (a target vocabulary could hold one) becomes a space, so lines stay aligned
    with the input."""
    if nbest == 1:
        return "".join(f"{_one_line(hypotheses[0].text)}\n" for hypotheses in results)
    return "".join(
        f"{index} ||| {_one_line(h.text)} ||| {h.score:.6f}\n"
        for index, hypotheses in enumerate(results, start=first_index)
        for h in hypotheses
    )


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


@contextmanager
def _input_lines(path: str | None) -> Iterator[Iterator[str]]:
    """The lines of the file ``path`` or of stdin, read as they are needed."""
    if path in STDIO:
        yield decode_lines(sys.stdin.buffer, "stdin")
        return
    assert path is not None
    with open(path, "rb") as handle:
        yield decode_lines(handle, path)


@contextmanager
def _output(path: str | None) -> Iterator[Callable[[str], None]]:
    """A function writing text to stdout (flushed at once) or to the file ``path``, which is
    replaced only when the block ends without an error: never left half-written."""
    if path in STDIO:

        def write_stdout(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        yield write_stdout
        return
    assert path is not None
    with atomic_writer(path) as file:

        def write_file(text: str) -> None:
            file.write(text.encode("utf-8"))

        yield write_file


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
