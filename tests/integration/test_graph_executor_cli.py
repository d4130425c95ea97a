"""nmtbucket-train with the CUDA-graph executor's logic on the CPU (capture replaced by a rerun
of the static-buffer step, see tests/executor_cases.py): the whole trainer path, ahead-of-time
capture, accumulation windows across keys, dropout and a mid-epoch resume give the very
parameters of an eager run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import nmtbucket.training.pipeline
from nmtbucket.executors.cuda_graph import CudaGraphFactory
from nmtbucket.training.checkpoint import load_checkpoint
from tests.executor_cases import RecordedOps
from tests.integration.test_lm_train_cli import lm_overrides, write_tiny_text
from tests.integration.train_cli import run_cli, tiny_overrides, write_tiny_corpus


def _use_graphs(monkeypatch: pytest.MonkeyPatch) -> list[CudaGraphFactory]:
    """Make every run build the cuda_graph factory (with CPU stand-ins); returns those made."""
    made: list[CudaGraphFactory] = []

    def build(config: Any, device: torch.device, num_keys: int) -> CudaGraphFactory:
        factory = CudaGraphFactory(config.graph_warmup_runs, capture=RecordedOps(), new_pool=object)
        made.append(factory)
        return factory

    monkeypatch.setattr(nmtbucket.training.pipeline, "build_executor_factory", build)
    return made


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return dict(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"])


def _assert_same_weights(a: Path, b: Path) -> None:
    expected, got = _weights(a), _weights(b)
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        where = f"{name}: {{}}".format
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=where)


def test_translation_with_graphs_trains_like_eager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_corpus(tmp_path / "data")
    extra = {"trainer.accumulate": 2, "trainer.max_updates": 4, "model.dropout": 0.2}
    assert run_cli(monkeypatch, tiny_overrides(tmp_path, "eager", **extra)) == 0
    factories = _use_graphs(monkeypatch)
    assert run_cli(monkeypatch, tiny_overrides(tmp_path, "graphs", **extra)) == 0
    _assert_same_weights(tmp_path / "eager", tmp_path / "graphs")
    steps = [r for r in factories[0].records if r.kind != "eval"]  # eval: validation
    keys = {r.bucket_key for r in steps}
    assert len(keys) > 1 and {r.kind for r in steps} == {"step+update", "step"}
    assert len(steps) == 2 * len(keys)  # each captured once, ahead of training
    assert steps[0].bucket_key == max(keys, key=lambda k: k.src_len * k.tgt_len)  # default first


def test_a_language_model_resumed_mid_epoch_with_graphs_equals_one_eager_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_text(tmp_path / "data")
    fast = {"model.dropout": 0.3, "trainer.accumulate": 3}
    whole = lm_overrides(tmp_path, "ptb_small", "eager", **fast, **{"trainer.max_updates": 24})
    assert run_cli(monkeypatch, whole) == 0
    _use_graphs(monkeypatch)
    for updates in (12, 24):  # stops mid-epoch, then resumes: captured again, state reloaded
        half = lm_overrides(
            tmp_path, "ptb_small", "graphs", **fast, **{"trainer.max_updates": updates}
        )
        assert run_cli(monkeypatch, half) == 0
    _assert_same_weights(tmp_path / "eager", tmp_path / "graphs")
    eager = load_checkpoint(tmp_path / "eager" / "checkpoints" / "last.pt")["step"]
    graphs = load_checkpoint(tmp_path / "graphs" / "checkpoints" / "last.pt")["step"]
    torch.testing.assert_close(graphs["hidden"], eager["hidden"], rtol=1e-5, atol=1e-6)
