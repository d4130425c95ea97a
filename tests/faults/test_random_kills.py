"""B. Random kills: SIGKILL (and SIGTERM) after seeded random delays anywhere in a run, data
preparation and scoring included; each run is then rerun to completion and must equal the
uninterrupted reference run. 5 SIGKILLs and 2 SIGTERMs in CI; 50 and 20 more in the slow tier."""

from __future__ import annotations

import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.faults.harness import TrainingChild, compared_and_recorded, overrides, train_until_done


def _kill_and_rerun(
    tmp_path: Path,
    corpus: Path,
    reference: Path,
    run_seconds: float,
    number: int,
    seed: int,
    kills: int,
) -> None:
    """``kills`` signals ``number``, each at a random time into a run of one folder, then a run
    to the end; the result must equal the reference. A run that ends before its signal does
    not count: its folder and cache are removed, so the next attempt is a whole run again, its
    signal timed by the length of the one that ended (the reference's, measured once, can be
    longer than a run here)."""
    rng = random.Random(seed)
    argv = overrides(tmp_path, corpus)
    landed = 0
    for _ in range(4 * kills):
        if landed == kills:
            break
        child = TrainingChild(argv, tmp_path)
        time.sleep(rng.uniform(0.0, run_seconds))
        landed += child.signal(number)
        outcome = child.wait()
        assert outcome.exitcode in (0, -number, 75), outcome.output[-3000:]
        if outcome.exitcode == 0:
            shutil.rmtree(tmp_path / "run")
            shutil.rmtree(tmp_path / "cache")
            run_seconds = outcome.seconds
    assert landed == kills, f"{landed} of {kills} signals reached a running training"
    train_until_done(argv, tmp_path)
    kind = f"B. {signal.Signals(number).name} at a random time"
    assert not compared_and_recorded(kind, landed, tmp_path / "run", reference)


@pytest.mark.parametrize("seed", range(5))
def test_b_sigkill_at_random_times_loses_nothing(
    tmp_path: Path, corpus: Path, reference: Path, reference_seconds: float, seed: int
) -> None:
    _kill_and_rerun(tmp_path, corpus, reference, reference_seconds, signal.SIGKILL, seed, kills=1)


@pytest.mark.parametrize("seed", range(2))
def test_b_sigterm_at_random_times_loses_nothing(
    tmp_path: Path, corpus: Path, reference: Path, reference_seconds: float, seed: int
) -> None:
    _kill_and_rerun(
        tmp_path, corpus, reference, reference_seconds, signal.SIGTERM, 100 + seed, kills=1
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_b_many_kills_in_a_row_lose_nothing(
    tmp_path: Path, corpus: Path, reference: Path, reference_seconds: float, seed: int
) -> None:
    """The slow tier: 50 SIGKILLs, five into each folder, and 20 SIGTERMs, two into each."""
    seconds = reference_seconds
    _kill_and_rerun(tmp_path, corpus, reference, seconds, signal.SIGKILL, 1000 + seed, kills=5)
    rerun = tmp_path / "again"
    rerun.mkdir()
    _kill_and_rerun(rerun, corpus, reference, seconds, signal.SIGTERM, 2000 + seed, kills=2)
