"""Reading plain-text corpora: one sentence per line, UTF-8, with errors that name file and line."""

from __future__ import annotations

from pathlib import Path

from nmtbucket.errors import NmtBucketError


class CorpusError(NmtBucketError):
    """A corpus file that is missing or cannot be read as UTF-8 text."""


def read_lines(path: str | Path) -> list[str]:
    """All lines of ``path`` without their line endings.

    Invalid UTF-8 raises :class:`CorpusError` naming the file, the 1-based line and the byte.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    lines: list[str] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise CorpusError(
                    f"{path}:{number}: invalid UTF-8 at byte {err.start} of the line "
                    f"({raw[err.start : err.start + 4]!r}); re-encode the file as UTF-8"
                ) from None
            lines.append(text.rstrip("\r\n"))
    return lines
