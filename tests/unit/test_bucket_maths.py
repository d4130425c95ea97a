"""Table-driven tests of the pure bucket maths."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmtbucket import (
    BucketConfigError,
    BucketingConfig,
    LengthPair,
    assign_buckets,
    build_bucket_scheme,
    define_batch_sizes,
    define_buckets,
    define_diagonal_buckets,
    define_explicit_buckets,
    define_grid_buckets,
)
from nmtbucket.bucketing.buckets import define_boundaries, sort_buckets
from nmtbucket.bucketing.keys import key_lengths, tokens_per_row

P = LengthPair


@pytest.mark.parametrize(
    ("max_len", "width", "expected"),
    [(10, 4, [4, 8, 10]), (8, 4, [4, 8]), (3, 5, [3]), (1, 1, [1]), (5, 1, [1, 2, 3, 4, 5])],
)
def test_define_boundaries(max_len: int, width: int, expected: list[int]) -> None:
    assert define_boundaries(max_len, width) == expected


@pytest.mark.parametrize(
    ("max_lengths", "width", "expected"),
    [
        ([8, 6], 4, [P(4, 4), P(4, 6), P(8, 4), P(8, 6)]),
        ([10], 4, [4, 8, 10]),
        ([4, 9], [4, 3], [P(4, 3), P(4, 6), P(4, 9)]),
    ],
)
def test_define_grid_buckets(max_lengths, width, expected) -> None:
    assert define_grid_buckets(max_lengths, width) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((20, 30, 8, 1.5), [P(8, 12), P(16, 24), P(20, 30)]),
        ((20, 10, 8, 0.5), [P(16, 8), P(20, 10)]),
        ((40, 10, 8, 1.0), [P(8, 8), P(16, 10), P(24, 10), P(32, 10), P(40, 10)]),
        ((16, 16, 8, 1.0), [P(8, 8), P(16, 16)]),
    ],
)
def test_define_diagonal_buckets(args, expected) -> None:
    assert define_diagonal_buckets(*args) == expected


def test_define_explicit_buckets_sorts_and_validates() -> None:
    assert define_explicit_buckets([[20, 20], [5, 7], (10, 3)]) == [P(5, 7), P(10, 3), P(20, 20)]
    assert define_explicit_buckets([7, 3]) == [3, 7]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "empty"),
        ([[10, 20], [20, 10]], r"add the largest key LengthPair\(src_len=20, tgt_len=20\)"),
        ([[10, 20], 5], "mix 1-D and 2-D"),
        ([[0, 4], [4, 4]], "length < 1"),
    ],
)
def test_define_explicit_buckets_errors(keys, message) -> None:
    with pytest.raises(BucketConfigError, match=message):
        define_explicit_buckets(keys)


@pytest.mark.parametrize(
    ("key", "budget", "multiple", "expected"),
    [
        (P(10, 22), 4096, 1, 128),
        (P(30, 30), 4096, 1, 68),
        (P(30, 30), 4096, 8, 64),
        (P(300, 300), 4096, 8, 6),  # fewer rows than the multiple: unrounded, within budget
        (35, 4096, 1, 117),
        (P(1, 1), 2, 1, 1),
    ],
)
def test_define_batch_sizes(key, budget, multiple, expected) -> None:
    sizes = define_batch_sizes([key], budget, multiple)
    assert sizes == {key: expected}
    assert sizes[key] * tokens_per_row(key) <= budget


def test_define_batch_sizes_budget_too_small() -> None:
    with pytest.raises(BucketConfigError, match="cannot hold one row of bucket"):
        define_batch_sizes([P(40, 40)], 79)


BUCKETS = [P(4, 4), P(4, 8), P(8, 4), P(8, 8)]


@pytest.mark.parametrize(
    ("lengths", "policy", "index", "skipped", "truncated"),
    [
        ([[1, 1], [4, 4], [5, 1], [1, 5], [8, 8]], "skip", [0, 0, 2, 1, 3], 0, 0),
        ([[9, 1], [2, 2], [3, 12]], "skip", [-1, 0, -1], 2, 0),
        ([[9, 1], [2, 2], [3, 12]], "truncate", [2, 0, 1], 0, 2),
    ],
)
def test_assign_buckets(lengths, policy, index, skipped, truncated) -> None:
    result = assign_buckets(torch.tensor(lengths), BUCKETS, policy)
    assert result.bucket_index.tolist() == index
    assert (result.num_skipped, result.num_truncated) == (skipped, truncated)


def test_assign_buckets_reports_longest_skipped() -> None:
    result = assign_buckets(torch.tensor([[9, 1], [2, 2], [3, 12]]), BUCKETS, "skip")
    assert result.longest_skipped == (9, 12)
    assert "skipped 2 longer than" in result.summary()


def test_assign_buckets_error_names_line() -> None:
    with pytest.raises(BucketConfigError, match=r"line 2 has lengths \(9, 1\)"):
        assign_buckets(torch.tensor([[2, 2], [9, 1]]), BUCKETS, "error")


def test_assign_buckets_rejects_unknown_policy() -> None:
    with pytest.raises(BucketConfigError, match="overlong policy"):
        assign_buckets(torch.tensor([[2, 2]]), BUCKETS, "drop")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lengths", "max_keys", "expected"),
    [
        ([[1]] * 10 + [[2]] + [[10]] * 10, 2, [1, 10]),
        ([[1]] * 10 + [[2]] * 10 + [[10]] * 10, 3, [1, 2, 10]),
        ([[3, 4]] * 5 + [[9, 9]], 5, [P(3, 4), P(9, 9)]),  # fewer distinct lengths than keys
        ([[2, 2]] * 5 + [[2, 8]] * 5 + [[8, 2]] * 5 + [[8, 8]], 3, [P(2, 2), P(2, 8), P(8, 8)]),
    ],
)
def test_define_buckets_table(lengths, max_keys, expected) -> None:
    assert define_buckets(torch.tensor(lengths), max_keys) == expected


def _padded(lengths: torch.Tensor, buckets) -> int:
    costs = torch.tensor([tokens_per_row(k) for k in buckets])
    return int(costs[assign_buckets(lengths, buckets).bucket_index].sum())


def _brute_force_best(lengths: torch.Tensor, max_keys: int) -> int:
    values = [sorted(set(lengths[:, j].tolist())) for j in range(lengths.shape[1])]
    candidates = [k for k in itertools.product(*values)]
    largest = tuple(v[-1] for v in values)
    others = [c for c in candidates if c != largest]
    best = None
    for n in range(max_keys):
        for combo in itertools.combinations(others, n):
            keys = [P(*k) if len(k) == 2 else k[0] for k in (*combo, largest)]
            cost = _padded(lengths, sort_buckets(keys))
            best = cost if best is None else min(best, cost)
    assert best is not None
    return best


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=40),
    st.integers(1, 3),
)
def test_define_buckets_near_brute_force_optimum(pairs, max_keys) -> None:
    lengths = torch.tensor(pairs)
    buckets = define_buckets(lengths, max_keys)
    assert len(buckets) <= max_keys
    assert key_lengths(buckets[-1]) == tuple(int(v) for v in lengths.max(dim=0).values)
    optimum = _brute_force_best(lengths, max_keys)
    assert (
        _padded(lengths, buckets) <= 1.10 * optimum
    )  # a heuristic: near, not always at, the optimum


def test_build_bucket_scheme_strategies() -> None:
    lengths = torch.tensor([[3, 4], [10, 12], [20, 25], [7, 5]])
    auto = build_bucket_scheme(lengths, BucketingConfig(strategy="auto", max_keys=2))
    assert auto.default_bucket_key == P(20, 25)
    grid = build_bucket_scheme(lengths, BucketingConfig(strategy="grid", width=10))
    assert grid.buckets[0] == P(10, 10) and grid.default_bucket_key == P(20, 25)
    capped = BucketingConfig(strategy="diagonal", width=8, length_ratio=1.0, max_lengths=[16, 16])
    assert build_bucket_scheme(lengths, capped).buckets == (P(8, 8), P(16, 16))
    explicit = BucketingConfig(strategy="explicit", keys=[[30, 30], [10, 12]], token_budget=600)
    scheme = build_bucket_scheme(lengths, explicit)
    assert scheme.batch_sizes == {P(10, 12): 27, P(30, 30): 10}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (BucketingConfig(strategy="sorted"), "strategy must be one of"),
        (BucketingConfig(overlong="drop"), "overlong must be one of"),
        (BucketingConfig(strategy="explicit", keys=[[5]]), "need 2 lengths each"),
        (BucketingConfig(max_lengths=[5]), "max_lengths has 1 values for 2 streams"),
    ],
)
def test_build_bucket_scheme_errors(config, message) -> None:
    with pytest.raises(BucketConfigError, match=message):
        build_bucket_scheme(torch.tensor([[3, 4], [10, 12]]), config)


def test_build_bucket_scheme_needs_examples() -> None:
    with pytest.raises(BucketConfigError, match="is the training corpus empty"):
        build_bucket_scheme(torch.zeros(0, 2, dtype=torch.int64), BucketingConfig())


@pytest.mark.parametrize("strategy", ["auto", "grid", "explicit"])
def test_build_bucket_scheme_refuses_to_skip_everything(strategy) -> None:
    config = BucketingConfig(strategy=strategy, max_lengths=[5, 5], keys=[[5, 5]])
    with pytest.raises(BucketConfigError, match="every example is longer than the largest"):
        build_bucket_scheme(torch.tensor([[6, 2], [3, 9]]), config)
