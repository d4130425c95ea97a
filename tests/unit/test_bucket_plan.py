"""The bucket plan: per-key loads of one epoch that add up, baselines without keys, the padding
curve, and its picture (matplotlib optional)."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
import torch

from nmtbucket.bucketing.keys import key_lengths
from nmtbucket.bucketing.picture import PlotUnavailable, draw_plan
from nmtbucket.bucketing.plan import curve_key_counts, greedy_batches, plan_buckets
from nmtbucket.config import BucketingConfig


def _lengths(rows: int, streams: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    source = torch.randint(2, 40, (rows, 1), generator=generator)
    noise = torch.randint(-3, 4, (rows, streams), generator=generator)
    return (source + noise).clamp(min=1)  # (N, streams), correlated like translations


@pytest.mark.parametrize("streams", [1, 2])
def test_the_loads_of_one_epoch_add_up(streams: int) -> None:
    lengths = _lengths(2000, streams)
    config = BucketingConfig(strategy="auto", max_keys=8, token_budget=1024)
    plan = plan_buckets(lengths, config, curve_keys=[1, 8])
    assert sum(load.examples for load in plan.loads) == len(lengths)  # each example once
    assert plan.total.real_tokens == int(lengths.sum())
    assert plan.total.padded_tokens == sum(load.padded_tokens for load in plan.loads)
    for load in plan.loads:
        assert load.batches * load.batch_size * sum(key_lengths(load.key)) >= load.padded_tokens > 0
        assert load.padded_tokens >= load.real_tokens
    random, by_length = plan.baselines
    assert random.real_tokens == by_length.real_tokens == plan.total.real_tokens
    assert random.padding_percent > by_length.padding_percent
    assert set(plan.curve) == {1, 8} and plan.curve[1] > plan.curve[8]
    assert abs(plan.curve[8] - plan.total.padding_percent) < 1e-9  # the same keys and epoch
    table = plan.table()
    assert table.count("\n| (") == len(plan.loads) and "| random |" in table


def test_greedy_batches_stay_within_the_budget() -> None:
    lengths = _lengths(500, 2)
    batches = greedy_batches(lengths, list(range(len(lengths))), budget=300)
    assert sorted(i for rows in batches for i in rows) == list(range(len(lengths)))
    for rows in batches:
        assert len(rows) == 1 or len(rows) * int(lengths[rows].max(dim=0).values.sum()) <= 300


def test_the_curve_goes_to_64_keys_or_twice_max_keys() -> None:
    assert curve_key_counts(BucketingConfig(max_keys=32)) == [1, 2, 4, 8, 16, 32, 64]
    assert curve_key_counts(BucketingConfig(max_keys=48)) == [1, 2, 4, 8, 16, 32, 48, 64]
    assert curve_key_counts(BucketingConfig(max_keys=100))[-2:] == [100, 128]


@pytest.mark.parametrize("streams", [1, 2])
def test_the_picture_is_a_png(tmp_path: Path, streams: int) -> None:
    pytest.importorskip("matplotlib")
    lengths = _lengths(300, streams)
    plan = plan_buckets(lengths, BucketingConfig(max_keys=4, token_budget=512), [1, 2, 4])
    path = draw_plan(plan, lengths, tmp_path / "buckets.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_picture_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    lengths = _lengths(100, 2)
    plan = plan_buckets(lengths, BucketingConfig(max_keys=2, token_budget=512))
    with pytest.raises(PlotUnavailable, match=r"pip install 'nmtbucket\[plot\]'"):
        draw_plan(plan, lengths, tmp_path / "buckets.png", "test")
    assert not (tmp_path / "buckets.png").exists()
