"""Training on two ranks (two processes, gloo on the CPU) against one process at the same
global batch: each rank takes half of every step's rows, its loss is normalised by both ranks'
counts, and the update sums the gradients, so the two ranks end bitwise equal to each other and
equal (up to float summation order) to the one process. That comparison uses plain SGD: Adam
divides each gradient element by its running magnitude, which turns summation-order noise in
elements whose gradient is ~0 into steps of up to the learning rate."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nmtbucket.distributed import Ranks, end_process_group, start_process_group, sum_across_ranks
from nmtbucket.errors import NmtBucketError
from nmtbucket.executors.compiled import CompileFactory
from nmtbucket.executors.cuda_graph import CudaGraphFactory
from nmtbucket.executors.eager import EagerExecutor
from nmtbucket.executors.interface import ExecutorFactory
from tests.executor_cases import RecordedOps, build_case, parameters, start_training, train

CPU = torch.device("cpu")
ROWS = 4  # rows (stream columns) of every step, both ranks together


def _executors(name: str) -> ExecutorFactory:
    if name == "eager":
        return EagerExecutor
    if name == "compile":
        return CompileFactory(expected_keys=3)
    return CudaGraphFactory(capture=RecordedOps(), new_pool=object)  # the CPU capture stand-in


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rank_worker(
    rank: int,
    world_size: int,
    port: int,
    case_name: str,
    accumulate: int,
    executor: str,
    optimizer: str,
    out: str,
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ranks = Ranks(rank, world_size, rank)
    start_process_group(ranks, CPU, timeout_seconds=60)
    try:
        case = build_case(case_name, CPU, dropout=0.0, ranks=ranks, rows=ROWS)
        training = start_training(case, _executors(executor), optimizer, ranks=ranks)
        train(training, case.batches, accumulate, case.loss_per, ranks)
        keys = [repr(batch.bucket_key) for batch in case.batches]
        result = {"parameters": parameters(training.model), "keys": keys}
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        end_process_group()


def _train_on_ranks(
    tmp_path: Path, case_name: str, accumulate: int, executor: str, optimizer: str
) -> list[dict]:
    world_size = 2
    settings = (case_name, accumulate, executor, optimizer, str(tmp_path))
    mp.spawn(_rank_worker, args=(world_size, _free_port(), *settings), nprocs=world_size)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]


@pytest.mark.parametrize(
    ("case_name", "accumulate", "executor", "optimizer"),
    [
        ("transformer", 1, "eager", "sgd"),
        ("transformer", 2, "eager", "sgd"),
        ("lm_stream", 1, "eager", "sgd"),
        ("lm_stream", 2, "eager", "sgd"),
        ("transformer", 2, "cuda_graph", "sgd"),
        ("transformer", 2, "eager", "adamw"),
        pytest.param("transformer", 2, "compile", "sgd", marks=pytest.mark.slow),
    ],
)
def test_two_ranks_train_as_one_process_with_their_rows(
    tmp_path: Path, case_name: str, accumulate: int, executor: str, optimizer: str
) -> None:
    ranks = _train_on_ranks(tmp_path, case_name, accumulate, executor, optimizer)
    case = build_case(case_name, CPU, dropout=0.0, rows=ROWS)
    assert ranks[0]["keys"] == ranks[1]["keys"] == [repr(b.bucket_key) for b in case.batches]
    for p0, p1 in zip(ranks[0]["parameters"], ranks[1]["parameters"], strict=True):
        assert torch.equal(p0, p1)  # the ranks never drift apart
    if optimizer != "sgd":
        return  # see the module docstring
    one = start_training(case, optimizer=optimizer)
    train(one, case.batches, accumulate, case.loss_per)
    start = build_case(case_name, CPU, dropout=0.0, rows=ROWS).build(EagerExecutor)
    moved = False
    for p0, p, initial in zip(
        ranks[0]["parameters"], parameters(one.model), start.parameters(), strict=True
    ):
        torch.testing.assert_close(p0, p, rtol=1e-4, atol=1e-5)
        moved |= not torch.equal(p, initial.detach())
    assert moved  # the updates were made, not skipped


def _dying_worker(rank: int, port: int, out: str) -> None:
    """Rank 1 dies after one update; rank 0 trains on and must fail with an error."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ranks = Ranks(rank, 2, rank)
    start_process_group(ranks, CPU, timeout_seconds=30)
    case = build_case("transformer", CPU, dropout=0.0, ranks=ranks, rows=ROWS)
    training = start_training(case, ranks=ranks)
    if rank == 1:
        train(training, case.batches[:1], 1, case.loss_per, ranks)
        os._exit(3)  # no goodbye: as a killed process
    try:
        train(training, case.batches * 50, 1, case.loss_per, ranks)
    except NmtBucketError as err:
        Path(out, "error.txt").write_text(str(err), encoding="utf-8")


def test_a_rank_that_dies_makes_the_others_fail_with_an_error(tmp_path: Path) -> None:
    context = mp.get_context("spawn")
    port = _free_port()
    workers = [
        context.Process(target=_dying_worker, args=(rank, port, str(tmp_path))) for rank in (0, 1)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    hanging = [w for w in workers if w.is_alive()]
    for worker in hanging:
        worker.kill()
    assert not hanging, "a rank hangs"
    assert workers[1].exitcode == 3
    message = (tmp_path / "error.txt").read_text(encoding="utf-8")
    assert message.startswith("rank 0 of 2: ") and "another rank has probably died" in message
    assert time.monotonic() - started < 90


def _nonfinite_worker(rank: int, port: int, out: str) -> None:
    """Both ranks train one update in which rank 1 alone saw a non-finite loss."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ranks = Ranks(rank, 2, rank)
    start_process_group(ranks, CPU, timeout_seconds=60)
    try:
        case = build_case("transformer", CPU, dropout=0.0, ranks=ranks, rows=ROWS)
        training = start_training(case, ranks=ranks)
        before = parameters(training.model)
        if rank == 1:
            training.update.note_loss(torch.tensor(float("nan")))
        train(training, case.batches[:1], 1, case.loss_per, ranks)
        unchanged = all(
            torch.equal(a, b) for a, b in zip(before, parameters(training.model), strict=True)
        )
        result = {"made": training.update.made, "unchanged": unchanged}
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        end_process_group()


def test_a_nonfinite_loss_on_one_rank_skips_the_update_on_every_rank(tmp_path: Path) -> None:
    mp.spawn(_nonfinite_worker, args=(_free_port(), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        assert torch.load(tmp_path / f"rank{rank}.pt") == {"made": False, "unchanged": True}


def test_under_nccl_host_values_are_summed_through_a_gloo_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # NCCL needs GPUs: the process group's calls are recorded instead
    calls: dict[str, object] = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(
        dist, "init_process_group", lambda backend, **kwargs: calls.update(init=backend)
    )
    monkeypatch.setattr(
        dist, "new_group", lambda backend, timeout: calls.update(new_group=backend) or "host"
    )
    monkeypatch.setattr(dist, "get_backend", lambda group: "gloo" if group == "host" else "nccl")

    def all_reduce(tensor: torch.Tensor, op: object, group: object) -> None:
        calls.update(reduced_on=tensor.device.type, group=group)
        tensor.mul_(2)  # as if the other rank had the same values

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    ranks = Ranks(rank=0, world_size=2)
    start_process_group(ranks, torch.device("cuda", 0), timeout_seconds=60)
    try:
        assert sum_across_ranks([1.0, 3.0], ranks) == [2.0, 6.0]
    finally:
        end_process_group()
    assert calls == {"init": "nccl", "new_group": "gloo", "reduced_on": "cpu", "group": "host"}
