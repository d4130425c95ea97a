"""The Python API, ``Translator.from_checkpoint(run).translate(lines)``, on a tiny trained run:
order, empty and over-long lines, batching, averaging and checkpoints that do not fit."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from nmtbucket.config import SearchConfig
from nmtbucket.constants import EOS_ID
from nmtbucket.errors import NmtBucketError
from nmtbucket.translation.run_folder import RunFolder
from nmtbucket.translation.translator import Translator

LINES = [
    "the cat sees a dog",
    "",
    "red",
    "a big green dog eats the small red cat",
    "   ",
    "dog",
]


def _translator(run: Path, beam: int = 3, **search: float) -> Translator:
    config = SearchConfig(beam_size=beam, max_output_len=12, **search)  # type: ignore[arg-type]
    return Translator.from_checkpoint(run, search=config, device="cpu")


def test_one_output_per_line_in_order_with_empty_lines_kept(tiny_run: Path) -> None:
    translator = _translator(tiny_run)
    outputs = translator.translate(LINES)
    assert len(outputs) == len(LINES)
    assert outputs[1] == "" and outputs[4] == ""
    assert all("\n" not in line for line in outputs)
    scored = translator.translate_nbest(LINES)
    assert scored[1][0].log_prob == 0.0 and scored[4][0].log_prob == 0.0  # never decoded
    assert all(scored[i][0].log_prob < 0 for i in (0, 2, 3, 5))  # decoded, EOS at least
    reversed_order = translator.translate(LINES[::-1])
    assert reversed_order == outputs[::-1]


@pytest.mark.parametrize("beam", [1, 4])
def test_one_line_at_a_time_equals_batched(tiny_run: Path, beam: int) -> None:
    translator = _translator(tiny_run, beam=beam)
    batched = translator.translate_nbest(LINES, nbest=beam)
    for line, expected in zip(LINES, batched, strict=True):
        alone = translator.translate_nbest([line], nbest=beam)[0]
        assert [t.text for t in alone] == [t.text for t in expected]
        for got, want in zip(alone, expected, strict=True):
            assert got.score == pytest.approx(want.score, abs=1e-5)


def test_small_token_budget_gives_the_same_translations(tiny_run: Path) -> None:
    assert _translator(tiny_run, token_budget=1).translate(LINES) == _translator(
        tiny_run
    ).translate(LINES)


def test_nbest_is_sorted_and_its_first_is_the_translation(tiny_run: Path) -> None:
    translator = _translator(tiny_run, beam=4)
    nbest = translator.translate_nbest(LINES, nbest=3)
    assert [len(h) for h in nbest] == [3] * len(LINES)
    for hypotheses, best in zip(nbest, translator.translate(LINES), strict=True):
        assert hypotheses[0].text == best
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
    with pytest.raises(NmtBucketError, match=r"nbest must be between 1 and search\.beam_size"):
        translator.translate_nbest(LINES, nbest=5)


def test_an_over_long_line_is_truncated_with_a_warning(
    tiny_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    translator = _translator(tiny_run)
    long_line = " ".join(["green dog"] * 200)
    with caplog.at_level(logging.WARNING, logger="nmtbucket.translation.translator"):
        outputs = translator.translate(["red", long_line])
    assert len(outputs) == 2 and translator.truncated_lines == 1
    assert "line 2 has" in caplog.text and "truncated" in caplog.text
    ids = translator.src_tokenizer.encode([long_line])[0]
    assert translator.encode([long_line]) == [[*ids[: translator.max_src_len - 1], EOS_ID]]


def test_unicode_survives(tiny_run: Path) -> None:
    outputs = _translator(tiny_run).translate(["Grüße 🐈 ünd 日本", "the cat\u2028sees"])
    assert len(outputs) == 2


def test_averaging_the_last_k_snapshots(tiny_run: Path) -> None:
    folder = RunFolder.open(tiny_run)
    snapshots = folder.snapshot_paths()
    assert [p.name for p in snapshots] == [f"update-0000000{u}.pt" for u in (6, 5, 4)]
    averaged = folder.build_model("last", average=3).state_dict()
    single = [RunFolder.open(tiny_run).build_model(str(p)).state_dict() for p in snapshots]
    for name, tensor in averaged.items():
        expected = sum(s[name].double() for s in single) / 3
        assert torch.allclose(tensor.double(), expected, atol=1e-6), name
    best = folder.best_paths()
    assert len(best) == 2
    with pytest.raises(NmtBucketError, match=r"average=4 with weights=last needs 4"):
        folder.weight_paths("last", 4)
    assert folder.weight_paths("last") == [tiny_run / "checkpoints" / "last.pt"]


def test_weights_that_do_not_fit_the_config_are_a_clear_error(
    tiny_run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model"]["d_model"] = 32
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(NmtBucketError, match=r"do not fit the model .*config\.json"):
        Translator.from_checkpoint(copy, device="cpu")


def test_an_incomplete_folder_names_what_is_missing(tiny_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    (copy / "tgt.spm.model").unlink()
    with pytest.raises(NmtBucketError, match=r"tgt\.spm\.model missing"):
        Translator.from_checkpoint(copy)
    with pytest.raises(NmtBucketError, match=r"checkpoint folder not found"):
        Translator.from_checkpoint(tmp_path / "nowhere")
