"""Executors on the CPU: the CUDA-graph executor's buffers, warm-up and capture order with
capture replaced by a rerun (tests/gpu runs the real graphs), the compiled executor, the
choice of executor, and static batches."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from nmtbucket.config import TrainerConfig
from nmtbucket.errors import NmtBucketError
from nmtbucket.executors.compiled import CompileFactory
from nmtbucket.executors.cuda_graph import CudaGraphFactory
from nmtbucket.executors.eager import EagerExecutor
from nmtbucket.executors.selection import build_executor_factory, resolve_executor
from nmtbucket.executors.static_batch import StaticBatch, batch_signature
from nmtbucket.lm.evaluator import PerplexityEvaluator
from nmtbucket.translation.evaluator import teacher_forced_nll
from tests.executor_cases import (
    CASES,
    RecordedOps,
    build_case,
    parameters,
    start_training,
    train,
)

CPU = torch.device("cpu")


def _graph_factory(**kwargs) -> tuple[CudaGraphFactory, RecordedOps]:
    capture = RecordedOps()
    return CudaGraphFactory(capture=capture, new_pool=object, **kwargs), capture


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("name", CASES)
def test_graph_executor_trains_like_eager(name: str, accumulate: int) -> None:
    case = build_case(name, CPU)
    eager = start_training(case)
    train(eager, case.batches, accumulate, case.loss_per)
    factory, _ = _graph_factory()
    graphs = start_training(case, factory)
    train(graphs, case.batches, accumulate, case.loss_per)  # keys captured lazily, mid-window
    assert graphs.losses == pytest.approx(eager.losses, rel=1e-5)
    for g, e in zip(parameters(graphs.model), parameters(eager.model), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    kinds = {r.kind for r in factory.records}
    assert kinds == ({"step+update", "step"} if accumulate > 1 else {"step+update"})


@pytest.mark.parametrize("name", ["transformer", "lm_stream"])
def test_capturing_ahead_trains_nothing_and_starts_with_the_default_key(name: str) -> None:
    case = build_case(name, CPU)
    eager = start_training(case)
    train(eager, case.batches, 2, case.loss_per)
    factory, capture = _graph_factory()
    training = start_training(case, factory)
    before = parameters(training.model)
    examples = sorted(case.batches, key=lambda b: b.bucket_key, reverse=True)  # largest first
    unique = list({b.bucket_key: b for b in reversed(examples)}.values())[::-1]
    training.model.prepare_train_steps(unique, training.step, training.update, accumulating=True)
    assert factory.records[0].bucket_key == training.model.default_bucket_key
    assert len(factory.records) == 2 * len(unique)
    assert len(set(map(id, capture.pools))) == 1  # one pool shared by every graph
    for p, b in zip(parameters(training.model), before, strict=True):
        assert torch.equal(p, b)
    assert all(float(g.abs().sum()) == 0 for g in training.update.grads)
    assert all(float(s["step"]) == 0 for s in training.optimizer.state.values())
    assert float(training.update.skipped) == 0 and float(training.update.force_skip) == 0
    assert training.step.state_dict() == {}  # warm-up carried no language-model state

    train(training, case.batches, 2, case.loss_per)  # and then trains exactly as eager did
    for g, e in zip(parameters(training.model), parameters(eager.model), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_one_pool_per_graph_when_not_shared() -> None:
    case = build_case("transformer", CPU)
    factory, capture = _graph_factory(share_pool=False)
    train(start_training(case, factory), case.batches, 1, case.loss_per)
    assert len(set(map(id, capture.pools))) == len(factory.records) == 3  # one per key


def test_a_skipped_update_inside_a_graph_changes_nothing() -> None:
    case = build_case("transformer", CPU)
    factory, _ = _graph_factory()
    training = start_training(case, factory)
    train(training, case.batches[:1], 1, case.loss_per)
    before = parameters(training.model)
    state = {
        k: v.clone() for k, v in training.optimizer.state[training.update.parameters[0]].items()
    }
    training.step.normalizer = 0.0  # loss / 0: an infinite gradient
    loss = training.model.train_step(case.batches[0], training.step, training.update)
    assert torch.isfinite(loss)
    assert not training.update.made and not torch.isfinite(training.update.grad_norm)
    for p, b in zip(parameters(training.model), before, strict=True):
        assert torch.equal(p, b)
    after = training.optimizer.state[training.update.parameters[0]]
    assert all(torch.equal(after[k], v) for k, v in state.items())
    assert all(float(g.abs().sum()) == 0 for g in training.update.grads)


def test_evaluation_graphs_give_eager_scores() -> None:
    case = build_case("transformer", CPU)
    factory, _ = _graph_factory()
    graphs = case.build(factory).eval()
    eager = case.build(EagerExecutor).eval()
    with torch.no_grad():
        for batch in case.batches:
            got = graphs.eval_step(batch, teacher_forced_nll)
            torch.testing.assert_close(got, eager.eval_step(batch, teacher_forced_nll))
            torch.testing.assert_close(graphs(batch), eager(batch))  # plain forward: eager
    assert {r.kind for r in factory.records} == {"eval"}
    assert [r.warmup_runs for r in factory.records] == [3, 0, 0]  # warm up once, then capture


def test_language_model_perplexity_is_the_same_with_evaluation_graphs() -> None:
    case = build_case("lm_stream", CPU)
    evaluator = PerplexityEvaluator("valid", case.batches, CPU, progress=False)
    factory, _ = _graph_factory()
    with_graphs = evaluator.evaluate(case.build(factory)).perplexity
    assert with_graphs == pytest.approx(evaluator.evaluate(case.build(EagerExecutor)).perplexity)
    # the first batch starts from zeros (no state), the others from the carried one: two graphs
    assert len(factory.records) == 2


@pytest.mark.parametrize("every_key", [False, True])
def test_only_the_first_graph_of_a_step_warms_up_unless_asked(every_key: bool) -> None:
    case = build_case("lm_sentences", CPU)  # keys of different rows: new state slots
    eager = start_training(case)
    train(eager, case.batches, 1, case.loss_per)
    factory, _ = _graph_factory(warmup_every_key=every_key)
    graphs = start_training(case, factory)
    train(graphs, case.batches, 1, case.loss_per)
    expected = [3, 3] if every_key else [3, 0]
    assert [r.warmup_runs for r in factory.records] == expected
    for g, e in zip(parameters(graphs.model), parameters(eager.model), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_graph_steps_need_a_parameter_update() -> None:
    case = build_case("transformer", CPU)
    factory, _ = _graph_factory()
    model = case.build(factory)
    with pytest.raises(NmtBucketError, match="captures the parameter update"):
        model.train_step(case.batches[0], case.make_step())


def test_static_batches_are_refilled_in_place_and_refuse_other_shapes() -> None:
    case = build_case("transformer", CPU)
    first, other = case.batches[0], case.batches[2]  # the same key
    static = StaticBatch(first)
    src = static.batch.src
    static.load(other)
    assert static.batch.src is src and torch.equal(src, other.src)
    assert static.batch.num_real_tokens == first.num_real_tokens  # Python values stay
    with pytest.raises(NmtBucketError, match="does not fit"):
        static.load(case.batches[1])
    lm = build_case("lm_stream", CPU).batches[0]
    with_state = dataclasses.replace(lm, state=(torch.zeros(2, 3, 8), torch.zeros(2, 3, 8)))
    assert batch_signature(lm) != batch_signature(with_state)
    with pytest.raises(NmtBucketError, match="dataclass batches"):
        StaticBatch((lm.inputs,))


def test_auto_is_eager_on_the_cpu_and_cuda_graph_needs_cuda() -> None:
    assert resolve_executor("auto", CPU) == "eager"
    assert resolve_executor("auto", torch.device("cuda")) == "cuda_graph"
    assert resolve_executor("compile", CPU) == "compile"
    with pytest.raises(NmtBucketError, match="needs a CUDA device"):
        resolve_executor("cuda_graph", CPU)
    with pytest.raises(NmtBucketError, match="must be one of"):
        resolve_executor("graphs", CPU)
    assert build_executor_factory(TrainerConfig(), CPU, 4) is EagerExecutor


def test_the_compile_factory_raises_recompile_limits_and_warns_about_many_keys() -> None:
    config = torch._dynamo.config
    with pytest.warns(UserWarning, match="more than trainer.compile_max_keys=2"):
        factory = CompileFactory(expected_keys=30, max_keys=2)
    assert config.recompile_limit >= 4 * 30 and config.accumulated_recompile_limit >= 4 * 30
    assert not factory.captures_update
    case = build_case("transformer", CPU)
    model = case.build(CompileFactory(expected_keys=1, max_keys=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in case.batches[:2]:  # two keys: one more than max_keys
            model.switch_bucket(batch.bucket_key)
    assert any("compile_max_keys=1" in str(w.message) for w in caught)


def test_compiled_steps_train_like_eager() -> None:
    case = build_case("lm_sentences", CPU, dropout=0.0)  # compiled dropout draws differently
    batches = case.batches[:2]
    eager = start_training(case)
    train(eager, batches, 1, case.loss_per)
    factory = CompileFactory(expected_keys=2)
    compiled = start_training(case, factory)
    torch._dynamo.utils.counters.clear()
    train(compiled, batches, 1, case.loss_per)
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] >= 2  # compiled, not eager
    assert not counters["graph_break"]  # one graph per key: the LSTM is traced too
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-4)
    for c, e in zip(parameters(compiled.model), parameters(eager.model), strict=True):
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-5)
    assert factory.compile_seconds > 0
