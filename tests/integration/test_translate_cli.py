"""``nmtbucket-translate`` on a tiny trained run: stdin/stdout and files, one output line per
input line, logs on stderr only, n-best lines, reference scores and clear errors."""

from __future__ import annotations

import io
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import nmtbucket.cli.translate
from nmtbucket.translation.translator import Translator

INPUT = "the cat sees a dog\n\nred\nGrüße 🐈\n" + " ".join(["big dog"] * 150) + "\nrunning"


def run_translate(monkeypatch: pytest.MonkeyPatch, *overrides: str, stdin: bytes = b"") -> int:
    monkeypatch.setattr(sys, "argv", ["nmtbucket-translate", *overrides])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    try:
        nmtbucket.cli.translate.main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def _expected(run: Path, lines: list[str], beam: int = 5) -> list[str]:
    from nmtbucket.config import SearchConfig

    translator = Translator.from_checkpoint(run, search=SearchConfig(beam_size=beam), device="cpu")
    return translator.translate(lines)


def test_stdin_to_stdout_one_line_per_input_line(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = INPUT.split("\n")  # the last line has no final newline
    assert (
        run_translate(monkeypatch, f"checkpoint={tiny_run}", "progress=false", stdin=INPUT.encode())
        == 0
    )
    captured = capsys.readouterr()
    out = captured.out.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)  # every output line ends with \n
    assert out[:-1] == _expected(tiny_run, lines)
    assert out[1] == ""  # the empty line stays empty
    assert "truncated" in captured.err  # the over-long line 5, kept but cut


def test_files_in_and_out_with_a_reference(
    tiny_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("the cat\r\nred dog\n\n", encoding="utf-8")  # CRLF and a blank last line
    reference = tmp_path / "ref.txt"
    reference.write_text("eht tac\nder god\n\n", encoding="utf-8")
    output = tmp_path / "out.txt"
    overrides = [f"checkpoint={tiny_run}", f"input={source}", f"output={output}"]
    overrides += [f"reference={reference}", "search.beam_size=2", "weights=last", "average=2"]
    assert run_translate(monkeypatch, *overrides) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    written = output.read_text(encoding="utf-8").split("\n")
    assert len(written) == 4 and written[2] == "" and written[3] == ""
    assert "BLEU" in captured.err and "chrF" in captured.err and "nrefs:1" in captured.err


def test_a_file_without_a_final_newline(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("red\n\ncat dog", encoding="utf-8")
    output = tmp_path / "out.txt"
    output.write_text("old output\n", encoding="utf-8")
    overrides = [f"checkpoint={tiny_run}", f"input={source}", f"output={output}"]
    assert run_translate(monkeypatch, *overrides, "progress=false") == 0
    lines = output.read_text(encoding="utf-8").split("\n")
    assert lines[:-1] == _expected(tiny_run, ["red", "", "cat dog"]) and lines[-1] == ""


def test_nbest_lines(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = [f"checkpoint={tiny_run}", "nbest=3", "search.beam_size=3", "progress=false"]
    assert run_translate(monkeypatch, *overrides, stdin=b"red\n\ncat dog\n") == 0
    rows = [line.split(" ||| ") for line in capsys.readouterr().out.splitlines()]
    assert [int(r[0]) for r in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(len(r) == 3 for r in rows)
    for index in (0, 2):
        scores = [float(r[2]) for r in rows if int(r[0]) == index]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "checkpoint is required"),
        (["checkpoint=/nowhere"], "checkpoint folder not found"),
        (["nbest=9"], "nbest must be between 1 and search.beam_size (5), got 9"),
        (["weights=best", "average=7"], "average=7 with weights=best needs 7"),
        (["+search.beam=3"], "unknown config key search.beam"),
        (["reference=REF", "input=IN"], "has 2 lines but the input IN has 1"),
        (["device=tpu"], "error: device=tpu is not a device; use auto, cpu, cuda or cuda:N"),
    ],
)
def test_errors_say_what_to_change(
    tiny_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    message: str,
) -> None:
    reference = tmp_path / "ref.txt"
    reference.write_text("a\nb\n", encoding="utf-8")
    source = tmp_path / "in.txt"
    source.write_text("red\n", encoding="utf-8")
    args = [o.replace("REF", str(reference)).replace("IN", str(source)) for o in overrides]
    message = message.replace("IN", str(source))
    if not any(o.startswith("checkpoint=") for o in args) and overrides:
        args.append(f"checkpoint={tiny_run}")
    assert run_translate(monkeypatch, *args, stdin=b"red\n") == 1
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_invalid_utf8_on_stdin_names_the_line(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_translate(monkeypatch, f"checkpoint={tiny_run}", stdin=b"red\ncat \xff dog\n") == 1
    assert "stdin:2: invalid UTF-8" in capsys.readouterr().err


def test_the_console_script_keeps_stdout_for_translations(tiny_run: Path) -> None:
    script = Path(sysconfig.get_path("scripts")) / "nmtbucket-translate"
    if not script.is_file():
        pytest.skip("the console script is not installed in this environment")
    done = subprocess.run(
        [str(script), f"checkpoint={tiny_run}", "search.beam_size=2"],
        input=b"red cat\n\ndog",
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.decode("utf-8").count("\n") == 3
    assert done.stdout.decode("utf-8").split("\n")[1] == ""
    assert b"translated 3 lines" in done.stderr
