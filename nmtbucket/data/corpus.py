"""Reading plain-text corpora: one sentence per line, UTF-8, with errors that name file and line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from nmtbucket.errors import NmtBucketError

BYTE_ORDER_MARK = "\ufeff"


class CorpusError(NmtBucketError):
    """A corpus file that is missing or cannot be read as UTF-8 text."""


def read_lines(path: str | Path) -> list[str]:
    """All lines of ``path`` without their line endings.

    Invalid UTF-8 raises :class:`CorpusError` naming the file, the 1-based line and the byte.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    with path.open("rb") as handle:
        return list(decode_lines(handle, str(path)))


def decode_lines(handle: Iterable[bytes], name: str) -> Iterator[str]:
    """The lines of a binary stream ``handle`` (split at ``\n`` only, so that U+2028 and a
    lone ``\r`` stay inside a line) as text without their line endings (``\r`` before
    ``\n`` too) and without a byte-order mark at the start, one at a time; ``name`` (a path,
    or ``stdin``) goes into errors.

    Invalid UTF-8 raises :class:`CorpusError` naming the stream, the 1-based line and the byte.
    """
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(
                f"{name}:{number}: invalid UTF-8 at byte {err.start} of the line "
                f"({raw[err.start : err.start + 4]!r}); re-encode the file as UTF-8"
            ) from None
        if number == 1:
            text = text.removeprefix(BYTE_ORDER_MARK)
            if not text:  # the whole stream was a byte-order mark: no lines
                return
        yield text.rstrip("\r\n")
