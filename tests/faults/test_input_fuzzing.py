"""H. Input fuzzing: bytes with ``\\r\\r\\n`` endings, byte-order marks, U+2028, NUL and
invalid UTF-8 give the same lines through a file as through stdin, one per ``\\n``, with the
same error for invalid UTF-8; a byte-order mark never reaches a line (so never a reference or
a vocabulary); ``nmtbucket-translate`` writes one output line per input line either way."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmtbucket.data.corpus import CorpusError, decode_lines, read_lines
from tests.faults.harness import LEDGER
from tests.integration.test_translate_cli import run_translate

PIECES = [b"cat", b" ", b"red dog", b"\xc3\xa9", b"\r", b"\xe2\x80\xa8", b"\x00", b"\xef\xbb\xbf"]
INVALID = [b"\xff", b"\xc3"]
ENDINGS = [b"\n", b"\r\n", b"\r\r\n"]


@st.composite
def texts(draw: st.DrawFn, invalid: bool = True) -> bytes:
    pieces = st.sampled_from(PIECES + INVALID if invalid else PIECES)
    lines = draw(st.lists(st.lists(pieces, max_size=5).map(b"".join), max_size=6))
    endings = draw(st.lists(st.sampled_from(ENDINGS), min_size=len(lines), max_size=len(lines)))
    text = b"".join(line + ending for line, ending in zip(lines, endings, strict=True))
    return (
        draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + text + draw(st.sampled_from([b"", b"tail"]))
    )


def _read(read: object) -> list[str] | str:
    try:
        return list(read())  # type: ignore[operator]
    except CorpusError as err:
        return str(err).split(":", 1)[1]  # the message without the file's name


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=texts())
def test_h_a_file_and_stdin_give_the_same_lines(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    through_file = _read(lambda: read_lines(path))
    through_stdin = _read(lambda: decode_lines(io.BytesIO(data), "stdin"))
    assert through_file == through_stdin
    expected = _expected_lines(data)
    if expected is None:
        assert isinstance(through_file, str) and "invalid UTF-8" in through_file
    else:
        assert through_file == expected
    LEDGER.record("H. fuzzed input bytes", 1, survived=True, lost=0)


def _expected_lines(data: bytes) -> list[str] | None:
    """What the lines must be (None: invalid UTF-8): the text without its leading byte-order
    mark, split at each ``\n`` (a last line may lack one), without the ``\r``s before it."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    parts = text.split("\n")
    if text.endswith("\n") or not text:
        parts.pop()
    return [part.rstrip("\r") for part in parts]


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=texts(invalid=False))
def test_h_translation_gives_one_line_per_input_line_from_a_file_or_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_run: Path, data: bytes
) -> None:
    source = tmp_path / "source.txt"
    source.write_bytes(data)
    from_file, from_stdin = tmp_path / "file.out", tmp_path / "stdin.out"
    common = (f"checkpoint={tiny_run}", "progress=false")
    assert run_translate(monkeypatch, *common, f"output={from_file}", f"input={source}") == 0
    assert run_translate(monkeypatch, *common, f"output={from_stdin}", stdin=data) == 0
    assert from_file.read_bytes() == from_stdin.read_bytes()
    assert from_file.read_bytes().count(b"\n") == len(read_lines(source))
    LEDGER.record("H. fuzzed input to nmtbucket-translate", 1, survived=True, lost=0)
