"""``nmtbucket-export`` on the tiny trained run: a safetensors folder that translates exactly
as the run does, loads without torch.load, and clear errors."""

from __future__ import annotations

import json
import struct
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

from nmtbucket.cli.export import main
from nmtbucket.translation.translator import Translator

LINES = ["the cat sees a dog", "", "red green", "big small cat runs"]


def test_an_export_translates_as_the_run_does_without_torch_load(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for average in (1, 2):
        export = tmp_path / f"export-{average}"
        assert main([str(tiny_run), str(export), "--average", str(average)]) == 0
        names = sorted(p.name for p in export.iterdir())
        assert names == [
            "buckets.json", "config.json", "model.safetensors", "src.spm.model", "tgt.spm.model",
        ]  # fmt: skip
        expected = Translator.from_checkpoint(tiny_run, average=average, device="cpu")
        with monkeypatch.context() as patched:
            patched.setattr(torch, "load", _no_pickles)
            exported = Translator.from_checkpoint(export, device="cpu")
        assert exported.translate(LINES) == expected.translate(LINES)
        for got, want in zip(
            exported.core.state_dict().values(), expected.core.state_dict().values(), strict=True
        ):
            assert torch.equal(got, want)


def _no_pickles(*args: object, **kwargs: object) -> None:
    raise AssertionError("an export must load without torch.load")


def test_the_weights_file_is_safetensors_without_pickle(tiny_run: Path, tmp_path: Path) -> None:
    assert main([str(tiny_run), str(tmp_path / "export")]) == 0
    data = (tmp_path / "export" / "model.safetensors").read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])  # the safetensors layout: a JSON header ...
    header = json.loads(data[8 : 8 + header_size])
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    assert 8 + header_size + max(ends) == len(data)  # ... then raw tensor bytes, nothing else


def test_errors_say_what_to_do(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    assert "checkpoint folder not found" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    assert main([str(tiny_run), str(busy)]) == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert main([str(tiny_run), str(tmp_path / "export")]) == 0
    assert main([str(tmp_path / "export"), str(tmp_path / "again")]) == 1
    assert "is an export already" in capsys.readouterr().err
    with pytest.raises(Exception, match="one set of weights"):
        Translator.from_checkpoint(tmp_path / "export", weights="last", device="cpu")


def test_the_console_script_is_installed() -> None:
    script = Path(sysconfig.get_path("scripts")) / "nmtbucket-export"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "model.safetensors" in result.stdout
