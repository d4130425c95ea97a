"""``nmtbucket-export --ctranslate2``: a tiny trained Transformer converted to CTranslate2
translates as nmtbucket does (greedy, float32: at least 99 % of the lines the same; int8: the
agreement is printed); an LSTM run is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nmtbucket.cli.export import main
from nmtbucket.config import SearchConfig
from nmtbucket.translation.translator import Translator
from tests.integration.train_cli import run_cli, tiny_overrides, write_tiny_corpus

ctranslate2 = pytest.importorskip("ctranslate2")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Transformer trained long enough to end its outputs (shared embeddings, tied)."""
    root = tmp_path_factory.mktemp("ct2_run")
    write_tiny_corpus(root / "data")
    settings = {
        "trainer.max_updates": 120, "trainer.lr": 3e-3, "trainer.validate_every": 0,
        "model.share_embeddings": True, "model.tie_output_embeddings": True,
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert run_cli(monkeypatch, tiny_overrides(root, **settings)) == 0
    return root


def _agreement(run: Path, model: Path, lines: list[str]) -> float:
    search = SearchConfig(beam_size=1)
    ours = Translator.from_checkpoint(run, search=search, device="cpu").translate(lines)
    translator = ctranslate2.Translator(str(model), device="cpu")
    source = Translator.from_checkpoint(run, device="cpu").src_tokenizer
    import sentencepiece as spm

    pieces = spm.SentencePieceProcessor(model_file=str(model / "src.spm.model"))
    target = spm.SentencePieceProcessor(model_file=str(model / "tgt.spm.model"))
    assert source.vocab_size == pieces.get_piece_size()
    results = translator.translate_batch(
        [pieces.encode(line, out_type=str) for line in lines],
        beam_size=1,
        max_decoding_length=search.max_output_len,
        min_decoding_length=0,  # nmtbucket may end at once (CTranslate2's default is 1)
    )
    theirs = [target.decode(result.hypotheses[0]) for result in results]
    return sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(lines)


def test_a_converted_transformer_translates_as_nmtbucket_does(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = trained / "data" / "tiny"
    lines = [
        line
        for split in ("test", "valid", "train")
        for line in (corpus / f"{split}.en").read_text().splitlines()
        if line
    ]
    run = trained / "run"
    assert main([str(run), str(tmp_path / "fp32"), "--ctranslate2"]) == 0
    assert main([str(run), str(tmp_path / "int8"), "--ctranslate2", "--quantization", "int8"]) == 0
    fp32 = _agreement(run, tmp_path / "fp32", lines)
    int8 = _agreement(run, tmp_path / "int8", lines)
    with capsys.disabled():
        print(
            f"\nCTranslate2 greedy agreement, {len(lines)} lines: fp32 {fp32:.3f}, int8 {int8:.3f}"
        )
    assert fp32 >= 0.99


def test_an_lstm_run_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tiny_corpus(tmp_path / "data")
    overrides = tiny_overrides(tmp_path, model="lstm", **{"model.d_model": 16})
    overrides = [o for o in overrides if not o.startswith(("model.num_heads", "model.d_ff"))]
    assert run_cli(monkeypatch, overrides) == 0
    assert main([str(tmp_path / "run"), str(tmp_path / "ct2"), "--ctranslate2"]) == 1
    assert "no spec matching nmtbucket's LSTM" in capsys.readouterr().err
    assert not (tmp_path / "ct2").exists()


def test_the_benchmark_script_compares_both(trained: Path, tmp_path: Path) -> None:
    corpus = trained / "data" / "tiny"
    out = tmp_path / "results.json"
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_ctranslate2.py"
    command = [
        sys.executable, str(script), str(trained / "run"), "--source", str(corpus / "test.en"),
        "--reference", str(corpus / "test.de"), "--beam", "2", "--rounds", "1",
        "--json", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    assert "| CTranslate2 int8 |" in result.stdout
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"nmtbucket", "CTranslate2 float32", "CTranslate2 int8"}
