"""What the fault-injection tests share: training runs in child processes that a test can kill
(forked from a server that has imported nmtbucket once, so that a run takes about a second),
the uninterrupted reference run every survivor is compared with, and the ledger of faults
injected, runs survived and outputs lost that the suite reports."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nmtbucket.files import TEMP_FILE_NAME
from nmtbucket.training.checkpoint import load_checkpoint
from nmtbucket.training.metrics import read_metrics
from tests.integration.train_cli import tiny_overrides

UPDATES = 12
SETTINGS = {
    "trainer.max_updates": UPDATES,
    "trainer.accumulate": 2,  # windows cross epoch ends (about 4 updates per epoch)
    "trainer.save_every": 2,
    "trainer.validate_every": 3,
    "trainer.keep_best": 2,
    "trainer.keep_last": 2,
    "trainer.lr": 3e-3,
    "model.dropout": 0.1,  # random state that must be restored exactly
}
"""The reference run: a tiny Transformer on the toy corpus, dropout on, accumulation 2,
frequent saves and validations."""

_SERVER = multiprocessing.get_context("forkserver")
_SERVER.set_forkserver_preload(["nmtbucket.cli.train", "tests.faults.harness"])


def overrides(root: Path, data: Path, **extra: Any) -> list[str]:
    """The reference run's overrides with its run folder and cache under ``root`` and the
    corpus under ``data`` (as written by ``write_tiny_corpus``)."""
    settings: dict[str, Any] = {**SETTINGS, "data.root": data, **extra}
    return tiny_overrides(root, **settings)


@dataclass
class Outcome:
    """How a training child ended: its exit status (negative: killed by that signal) and what
    it wrote to stdout and stderr."""

    exitcode: int
    output: str
    seconds: float


class TrainingChild:
    """``nmtbucket-train`` with ``argv`` in a child process run from ``cwd``, with the extra
    environment ``env`` (``NMTBUCKET_FAULT``) and ``limits`` (resource limits) set in it."""

    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
        limits: Mapping[int, int] | None = None,
    ) -> None:
        self.log = cwd / f"child-{time.monotonic_ns()}.log"
        self.process = _SERVER.Process(
            target=_train, args=(argv, str(cwd), dict(env or {}), dict(limits or {}), self.log)
        )
        self.started = time.monotonic()
        self.process.start()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def signal(self, number: int) -> bool:
        """Send signal ``number``; whether the child was still running to receive it."""
        if not self.alive():
            return False
        os.kill(self.pid, number)
        return True

    def wait(self, timeout: float = 180) -> Outcome:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            raise AssertionError(f"a training child ran past {timeout} s: {self.read_log()}")
        return Outcome(self.process.exitcode, self.read_log(), time.monotonic() - self.started)

    def read_log(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


def train(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    limits: Mapping[int, int] | None = None,
) -> Outcome:
    """Run a training child to its end."""
    return TrainingChild(argv, cwd, env, limits).wait()


def _train(
    argv: list[str], cwd: str, env: dict[str, str], limits: dict[int, int], log: Path
) -> None:
    """The child: stdout and stderr into ``log``, then ``nmtbucket-train`` as a user runs it."""
    import resource

    import nmtbucket.cli.train

    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.chdir(cwd)
    os.environ.update(env)
    for kind, limit in limits.items():
        resource.setrlimit(kind, (limit, limit))
    torch.set_num_threads(1)
    sys.argv = ["nmtbucket-train", *argv]
    code = 0
    try:
        nmtbucket.cli.train.main()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def train_until_done(argv: list[str], cwd: Path, attempts: int = 5) -> Outcome:
    """Rerun the same command until it finishes (status 0), as a job scheduler requeues."""
    for _ in range(attempts):
        outcome = train(argv, cwd)
        if outcome.exitcode == 0:
            return outcome
        assert outcome.exitcode in (1, 75), outcome.output[-3000:]
    raise AssertionError(f"no success in {attempts} reruns: {outcome.output[-3000:]}")


# --- comparison with the reference run ------------------------------------------------------


def differences(run: Path, reference: Path, extra: frozenset[str] = frozenset()) -> list[str]:
    """What differs between a finished run and the reference run: every entry of the final
    training state (weights, optimizer, schedule, iterator, carried and random state, kept
    checkpoints, counters but the clock), each update's training row (once each), the
    validation rows, the checkpoint files and their weights, leftover temporary files and the
    test translations. ``extra`` names files the run's ``checkpoints/`` holds beyond the
    reference's (a torn file set aside). Empty when nothing was lost."""
    found: list[str] = []
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    expected = load_checkpoint(reference / "checkpoints" / "last.pt")
    found += _compare(_comparable(state), _comparable(expected), "last.pt")
    rows = read_metrics(run)
    trained = [row["update"] for row in rows if row["kind"] == "train"]
    if trained != list(range(1, UPDATES + 1)):
        found.append(f"metrics.jsonl training rows are for updates {trained}")
    valid = [(r["update"], r["loss"]) for r in rows if r["kind"] == "valid"]
    expected_valid = [
        (r["update"], r["loss"]) for r in read_metrics(reference) if r["kind"] == "valid"
    ]
    if valid != expected_valid:
        found.append(f"validation rows {valid} differ from the reference's {expected_valid}")
    names = _names(run / "checkpoints")
    if names != _names(reference / "checkpoints") | extra:
        found.append(f"checkpoint files {sorted(names)} differ from the reference's")
    for name in sorted(names & _names(reference / "checkpoints")):
        if name.startswith(("best-", "update-")):
            got = load_checkpoint(run / "checkpoints" / name)["model"]
            want = load_checkpoint(reference / "checkpoints" / name)["model"]
            found += _compare(got, want, name)
    for folder in (run, run / "checkpoints"):
        found += [
            f"temporary file {p} left" for p in folder.iterdir() if TEMP_FILE_NAME.match(p.name)
        ]
    if (run / "test.hyp.txt").read_bytes() != (reference / "test.hyp.txt").read_bytes():
        found.append("test.hyp.txt differs from the reference's translations")
    return found


def compared_and_recorded(
    kind: str, injected: int, run: Path, reference: Path, extra: frozenset[str] = frozenset()
) -> list[str]:
    """The :func:`differences` of a finished scenario of ``kind``, which ``injected`` faults
    hit, recorded in the ledger (it survived when there are none)."""
    lost = differences(run, reference, extra)
    LEDGER.record(kind, injected, survived=not lost, lost=len(lost))
    return lost


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A training state without what differs between equal runs: the clock, the run id and
    where the files were."""
    state = dict(state)
    state["progress"] = {k: v for k, v in state["progress"].items() if k != "train_seconds"}
    state["keeper"] = {k: v for k, v in state["keeper"].items() if k != "run"}
    state["identity"] = {k: v["sha256"] for k, v in state["identity"].items()}
    return state


def _compare(got: Any, want: Any, where: str) -> list[str]:
    if isinstance(want, torch.Tensor):
        same = isinstance(got, torch.Tensor) and got.dtype == want.dtype and torch.equal(got, want)
        return [] if same else [f"{where} differs"]
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping) or got.keys() != want.keys():
            return [f"{where} has other entries"]
        return [d for key in want for d in _compare(got[key], want[key], f"{where}.{key}")]
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return [f"{where} has another length"]
        return [
            d
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for d in _compare(g, w, f"{where}[{i}]")
        ]
    return [] if got == want else [f"{where}: {got!r} != {want!r}"]


# --- the ledger -----------------------------------------------------------------------------


@dataclass
class Ledger:
    """Per kind of fault: the scenarios run (a run folder, or one fuzzed input), the faults
    injected into them (a signal counts when it reached a running process), the scenarios that
    survived (finished equal to the reference, or stopped with the clear error their case
    promises) and the outputs lost (differences from the reference)."""

    rows: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self, kind: str, injected: int, survived: bool, lost: int) -> None:
        """One scenario of ``kind``."""
        row = self.rows.setdefault(kind, {"scenarios": 0, "injected": 0, "survived": 0, "lost": 0})
        row["scenarios"] += 1
        row["injected"] += injected
        row["survived"] += int(survived)
        row["lost"] += lost

    def write(self, folder: Path, seconds: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(
            json.dumps({"rows": self.rows, "seconds": round(seconds, 1)}, indent=2) + "\n"
        )
        columns = ("scenarios", "injected", "survived", "lost")
        lines = [
            "| fault | scenarios | faults injected | scenarios survived | outputs lost |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| {kind} | " + " | ".join(str(row[c]) for c in columns) + " |"
                for kind, row in sorted(self.rows.items())
            ),
        ]
        total = [str(sum(row[c] for row in self.rows.values())) for c in columns]
        lines.append("| **all** | " + " | ".join(total) + " |")
        (folder / "summary.md").write_text("\n".join(lines) + "\n")


LEDGER = Ledger()


def signal_name(exitcode: int) -> str:
    return signal.Signals(-exitcode).name if exitcode < 0 else f"status {exitcode}"
