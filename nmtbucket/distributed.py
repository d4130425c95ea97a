"""Training on several processes (ranks) started by ``torchrun``: which rank this process is,
its process group (NCCL on CUDA, one device per local rank; gloo on the CPU) and the few
collectives the trainer needs. Counts and flags the ranks agree on at every step are summed on
the host, through gloo (a second group under NCCL), so that agreeing never waits for a GPU.
A process not started by torchrun is rank 0 of 1: then every collective here returns at once
and ``torch.distributed`` is never touched.

The collectives have the process group's timeout: a rank that dies or hangs makes the others
fail with an error naming this rank, instead of waiting forever."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import _functional_collectives as functional_collectives

from nmtbucket.errors import NmtBucketError

T = TypeVar("T")

_host_group: Any = None  # under NCCL: a gloo group over the same ranks, for host values


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # the rank among those on this machine: its CUDA device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run folder, validates and scores."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Ranks:
        """The ranks ``torchrun`` describes in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; one
        process when ``WORLD_SIZE`` is unset."""
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ:
            return cls()
        try:
            values = [int(environ.get(name, "0")) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")]
        except ValueError:
            raise NmtBucketError(
                "RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them), got "
                f"{[environ.get(n) for n in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')]}"
            ) from None
        rank, world_size, local_rank = values
        if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
            raise NmtBucketError(
                f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world_size} "
                f"LOCAL_RANK={local_rank}"
            )
        return cls(rank, world_size, local_rank)

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


def rank_device(ranks: Ranks, device: torch.device) -> torch.device:
    """This rank's device for the resolved ``trainer.device``: ``cuda:LOCAL_RANK`` on CUDA (one
    GPU per rank), the CPU as it is."""
    if not ranks.distributed or device.type != "cuda":
        return device
    if device.index not in (None, 0):
        raise NmtBucketError(
            f"trainer.device={device} under torchrun: each rank takes cuda:LOCAL_RANK; set "
            "trainer.device=cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    if ranks.local_rank >= torch.cuda.device_count():
        raise NmtBucketError(
            f"{ranks} has LOCAL_RANK {ranks.local_rank} but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s); start at most that many processes "
            "per node (torchrun --nproc_per_node)"
        )
    return torch.device("cuda", ranks.local_rank)


def start_process_group(ranks: Ranks, device: torch.device, timeout_seconds: float) -> None:
    """Join the training processes (nothing for one process): NCCL on CUDA, gloo on the CPU,
    rendezvous as torchrun set it up (``MASTER_ADDR``, ``MASTER_PORT``)."""
    if not ranks.distributed or dist.is_initialized():
        return
    if timeout_seconds <= 0:
        raise NmtBucketError(
            f"trainer.distributed_timeout_seconds must be positive, got {timeout_seconds}"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=timeout_seconds)
    dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world_size, timeout=timeout)
    if backend == "nccl":
        global _host_group
        _host_group = dist.new_group(backend="gloo", timeout=timeout)


def end_process_group() -> None:
    """Leave the process group, if this process joined one."""
    global _host_group
    _host_group = None
    if dist.is_initialized():
        dist.destroy_process_group()


def _collective(what: str, ranks: Ranks, run: Any, *args: Any) -> Any:
    """``run(*args)``; a failure (a rank died, a timeout) becomes an error naming this rank."""
    try:
        return run(*args)
    except RuntimeError as err:  # torch.distributed's errors derive from it
        raise NmtBucketError(
            f"{ranks}: {what} failed, another rank has probably died or hangs "
            f"(trainer.distributed_timeout_seconds bounds the wait): {err}"
        ) from None


def sum_across_ranks(values: Sequence[float], ranks: Ranks) -> list[float]:
    """Each of ``values`` summed over the ranks (float64: exact for counts below 2**53), on the
    host: no GPU is involved, so no rank waits for its GPU to finish its queued work."""
    if not ranks.distributed:
        return [float(v) for v in values]
    tensor = torch.tensor(values, dtype=torch.float64)
    group = dist.group.WORLD if _host_group is None else _host_group
    assert dist.get_backend(group) == "gloo", "host values are summed through gloo"
    _collective("summing counts", ranks, dist.all_reduce, tensor, dist.ReduceOp.SUM, group)
    return tensor.tolist()


def from_main_rank(value: T, ranks: Ranks) -> T:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not ranks.distributed:
        return value
    box = [value]
    _collective("receiving rank 0's result", ranks, dist.broadcast_object_list, box, 0)
    return box[0]


def gathered(value: T, ranks: Ranks) -> list[T]:
    """Every rank's ``value`` (picklable; tensors are moved to the CPU first), by rank."""
    if not ranks.distributed:
        return [value]
    on_cpu = _to_cpu(value)
    values: list[Any] = [None] * ranks.world_size
    _collective("gathering state from the ranks", ranks, dist.all_gather_object, values, on_cpu)
    return values


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(item) for item in value)
    return value


def barrier(ranks: Ranks) -> None:
    """Wait until every rank is here."""
    if ranks.distributed:
        _collective("waiting for the other ranks", ranks, dist.barrier)


def all_reduce_(tensors: Iterable[torch.Tensor], ranks: Ranks) -> None:
    """Sum each of ``tensors`` over the ranks, in place. No host synchronisation, so an update
    captured as a CUDA graph can hold it (NCCL inside the graph). It runs as PyTorch's
    functional collective, an operator like any other (what ``torch.compile`` traces and the
    CPU stand-in for graph capture records), then a copy back."""
    if ranks.distributed:
        for tensor in tensors:
            _collective("summing gradients", ranks, _sum_into, tensor)


def _sum_into(tensor: torch.Tensor) -> None:
    assert dist.group.WORLD is not None
    summed = functional_collectives.all_reduce(tensor, "sum", dist.group.WORLD)
    tensor.copy_(functional_collectives.wait_tensor(summed))  # an operator too: replayed in order


def broadcast_parameters(module: nn.Module, ranks: Ranks) -> None:
    """Rank 0's parameters and buffers on every rank (they start equal from the same seed;
    this makes sure)."""
    if not ranks.distributed:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            _collective("receiving rank 0's parameters", ranks, dist.broadcast, tensor, 0)
