"""The cuda_graph and compile executors on a real GPU (CI never runs these; see
bench/results/ for the logs of the runs made).

Correctness: K updates through captured graphs give the parameters of K eager updates. Stated
tolerance (fp32, no dropout): plain SGD to rtol 1e-4 / atol 1e-6, since its update is linear in
the gradient; AdamW to rtol 1e-3 / atol 2e-4 (a fifteenth of one step at lr 3e-3), because Adam
divides by the gradient's running size and an element whose gradient is rounding noise can
move by up to lr whichever kernels compute it. Memory: every key captured into the shared pool
peaks at most 1.1x the largest key alone (allocated and reserved).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from nmtbucket.executors.cuda_graph import CudaGraphFactory
from nmtbucket.executors.eager import EagerExecutor
from nmtbucket.executors.graph_memory import measure_capture_memory
from nmtbucket.lm.evaluator import PerplexityEvaluator
from nmtbucket.training.checkpoint import load_checkpoint
from nmtbucket.translation.evaluator import teacher_forced_nll
from tests.executor_cases import CASES, build_case, memory_case, parameters, start_training, train
from tests.integration.train_cli import read_results, run_cli, tiny_overrides, write_tiny_corpus

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda")
TOLERANCE = {"sgd": {"rtol": 1e-4, "atol": 1e-6}, "adamw": {"rtol": 1e-3, "atol": 2e-4}}


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("name", CASES)
def test_graph_updates_match_eager_updates(name: str, optimizer: str, accumulate: int) -> None:
    case = build_case(name, CUDA, dropout=0.0)
    eager = start_training(case, optimizer=optimizer)
    train(eager, case.batches, accumulate, case.loss_per)
    factory = CudaGraphFactory()
    graphs = start_training(case, factory, optimizer=optimizer)
    train(graphs, case.batches, accumulate, case.loss_per)
    assert graphs.losses == pytest.approx(eager.losses, rel=1e-4, abs=1e-5)
    start = parameters(case.build(EagerExecutor))
    assert any(not torch.equal(g, s) for g, s in zip(parameters(graphs.model), start, strict=True))
    for g, e in zip(parameters(graphs.model), parameters(eager.model), strict=True):
        torch.testing.assert_close(g, e, **TOLERANCE[optimizer])
    keys = {b.bucket_key for b in case.batches}
    assert {r.bucket_key for r in factory.records} == keys  # every key ran as a graph


def test_capturing_ahead_changes_nothing_and_a_skipped_update_inside_a_graph_neither() -> None:
    case = build_case("transformer", CUDA)
    training = start_training(case, CudaGraphFactory())
    before = parameters(training.model)
    training.model.prepare_train_steps(case.batches[:2], training.step, training.update)
    for p, b in zip(parameters(training.model), before, strict=True):
        assert torch.equal(p, b)
    train(training, case.batches[:1], 1, case.loss_per)
    trained = parameters(training.model)
    assert training.update.made
    assert any(not torch.equal(p, b) for p, b in zip(trained, before, strict=True))
    training.step.normalizer = 0.0  # an infinite gradient: the graph's update must skip
    training.model.train_step(case.batches[0], training.step, training.update)
    assert not training.update.made
    for p, b in zip(parameters(training.model), trained, strict=True):
        assert torch.equal(p, b)


def test_a_two_layer_lstm_with_dropout_trains_in_graphs() -> None:
    # cuDNN keeps its own dropout state for the layers of an nn.LSTM: built by the first
    # warm-up, it must survive every later capture (nothing may reset the CUDA generator)
    case = build_case("lm_sentences", CUDA, dropout=0.3)
    training = start_training(case, CudaGraphFactory())
    before = parameters(training.model)
    train(training, case.batches * 3, 2, case.loss_per)
    assert all(math.isfinite(loss) for loss in training.losses) and training.update.made
    trained = parameters(training.model)
    assert any(not torch.equal(p, b) for p, b in zip(trained, before, strict=True))


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_evaluation_graphs_give_eager_scores(name: str) -> None:
    case = build_case(name, CUDA)
    graphs = case.build(CudaGraphFactory()).eval()
    eager = case.build(EagerExecutor).eval()
    with torch.no_grad():
        for batch in case.batches:
            got = graphs.eval_step(batch, teacher_forced_nll)
            expected = eager.eval_step(batch, teacher_forced_nll)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    lm = build_case("lm_stream", CUDA)
    evaluator = PerplexityEvaluator("valid", lm.batches, CUDA, progress=False)
    with_graphs = evaluator.evaluate(lm.build(CudaGraphFactory())).perplexity
    assert with_graphs == pytest.approx(evaluator.evaluate(lm.build(EagerExecutor)).perplexity)


def test_keys_sharing_one_pool_take_little_more_memory_than_the_largest_key() -> None:
    build, examples = memory_case(CUDA)
    largest = measure_capture_memory(build, examples[:1], share_pool=True)
    shared = measure_capture_memory(build, examples, share_pool=True)
    private = measure_capture_memory(build, examples, share_pool=False)
    print({"largest": largest.as_dict(), "shared": shared.as_dict(), "private": private.as_dict()})
    assert shared.peak_allocated <= 1.1 * largest.peak_allocated
    assert shared.peak_reserved <= 1.1 * largest.peak_reserved
    assert private.peak_reserved > shared.peak_reserved


def test_training_with_cuda_graphs_gives_eager_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_corpus(tmp_path / "data")
    common = {
        "trainer.device": "cuda",
        "trainer.bf16": False,
        "model.dropout": 0.0,
        "trainer.accumulate": 2,
        "trainer.optimizer": "sgd",
        "trainer.lr": 0.5,
    }
    for executor in ("eager", "cuda_graph", "compile"):
        overrides = tiny_overrides(tmp_path, executor, **common, **{"trainer.executor": executor})
        assert run_cli(monkeypatch, overrides) == 0
        assert read_results(tmp_path / executor)["updates"] == 4
    expected = load_checkpoint(tmp_path / "eager" / "checkpoints" / "last.pt")["model"]
    for executor in ("cuda_graph", "compile"):
        got = load_checkpoint(tmp_path / executor / "checkpoints" / "last.pt")["model"]
        for name, tensor in expected.items():
            torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
