"""Property-based tests of the bucket iterator: coverage, shapes, budget, resume, sharding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nmtbucket import (
    BucketBatchSampler,
    BucketingConfig,
    BucketIterator,
    NmtBucketError,
    SequenceDataset,
    TokenSequences,
    build_bucket_scheme,
)
from nmtbucket.bucketing.keys import key_lengths, tokens_per_row
from nmtbucket.constants import FILLER

PAD = 0


@st.composite
def corpora(draw, max_examples: int = 120):
    """Random corpora of one or two streams with a random bucketing config."""
    streams = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(1, max_examples))
    lengths = draw(st.lists(st.tuples(*[st.integers(1, 30)] * streams), min_size=n, max_size=n))
    strategy = draw(st.sampled_from(["auto", "grid", "diagonal"]))
    config = BucketingConfig(
        strategy=strategy,
        max_keys=draw(st.integers(1, 8)),
        width=draw(st.integers(2, 12)),
        token_budget=draw(st.integers(64, 600)),
        batch_multiple=draw(st.sampled_from([1, 8])),
        overlong=draw(st.sampled_from(["skip", "truncate"])),
        max_lengths=draw(st.sampled_from([[], [24] * streams])),
    )
    lengths = torch.tensor(lengths)
    if config.max_lengths and config.overlong == "skip":  # keep at least one example
        assume(bool((lengths <= config.max_lengths[0]).all(dim=1).any()))
    return lengths, config


def make_dataset(lengths: torch.Tensor) -> SequenceDataset:
    """Token ids encode (example, position) so a test can see which example a row holds."""
    streams = []
    for j in range(lengths.shape[1]):
        seqs = [[1 + (i * 31 + p) % 97 for p in range(int(n))] for i, n in enumerate(lengths[:, j])]
        streams.append(TokenSequences.from_lists(seqs))
    return SequenceDataset(*streams)


def make_sampler(lengths, config, **kwargs) -> BucketBatchSampler:
    scheme = build_bucket_scheme(lengths, config)
    return BucketBatchSampler(
        lengths, scheme.buckets, scheme.batch_sizes, overlong=config.overlong, **kwargs
    )


def epoch_ids(sampler) -> list[int]:
    return [i for step in sampler for i in step.example_ids if i != FILLER]


@settings(max_examples=60, deadline=None)
@given(corpora(), st.integers(0, 3), st.booleans())
def test_every_example_exactly_once(corpus, seed, shuffle) -> None:
    lengths, config = corpus
    sampler = make_sampler(lengths, config, seed=seed, shuffle=shuffle)
    kept = (sampler.assignment.bucket_index >= 0).nonzero().flatten().tolist()
    for epoch in range(2):
        assert sampler.epoch == epoch
        assert sorted(epoch_ids(sampler)) == kept
    if config.overlong == "truncate":
        assert len(kept) == len(lengths)


@settings(max_examples=60, deadline=None)
@given(corpora())
def test_batches_have_exactly_their_key_shape_and_fit_the_budget(corpus) -> None:
    lengths, config = corpus
    assume(lengths.shape[1] == 2)  # a Batch holds a source and a target stream
    dataset = make_dataset(lengths)
    sampler = make_sampler(lengths, config)
    iterator = BucketIterator(dataset, sampler, pad_id=PAD)
    assert iterator.default_bucket_key == sampler.buckets[-1]
    for batch in iterator:
        expected = iterator.step_shapes[batch.bucket_key]
        assert batch.shape == expected
        limits = key_lengths(batch.bucket_key)
        assert tuple(batch.src.shape) == (expected[0], limits[0])
        if len(limits) == 2:
            assert tuple(batch.tgt.shape) == (expected[0], limits[1])
        assert batch.batch_size * tokens_per_row(batch.bucket_key) <= config.token_budget
        for row, example in enumerate(batch.example_ids.tolist()):
            if example == FILLER:
                assert int(batch.src_lengths[row]) == 0
                continue
            n = int(batch.src_lengths[row])
            assert n == min(int(lengths[example, 0]), limits[0])
            assert batch.src[row, :n].tolist() == dataset.streams[0][example][:n].tolist()
            assert (batch.src[row, n:] == PAD).all()
        real = int(batch.src_lengths.sum()) + (
            0 if batch.tgt_lengths is None else int(batch.tgt_lengths.sum())
        )
        assert batch.num_real_tokens == real


@settings(max_examples=60, deadline=None)
@given(corpora(), st.integers(0, 5), st.data())
def test_restore_mid_epoch_reproduces_the_rest(corpus, seed, data) -> None:
    lengths, config = corpus
    sampler = make_sampler(lengths, config, seed=seed)
    sampler.set_epoch(data.draw(st.integers(0, 3)))
    steps = iter(sampler)
    consumed = data.draw(st.integers(0, len(sampler)))
    for _ in range(consumed):
        next(steps)
    state = sampler.state_dict()
    rest = list(steps)
    restored = make_sampler(lengths, config, seed=seed)
    restored.load_state_dict(state)
    assert list(restored) == rest


@settings(max_examples=60, deadline=None)
@given(corpora(), st.integers(2, 4), st.integers(0, 3))
def test_sharded_ranks_are_disjoint_and_in_step(corpus, world_size, seed) -> None:
    lengths, config = corpus
    ranks = [
        make_sampler(lengths, config, seed=seed, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    steps = [list(sampler) for sampler in ranks]
    keys = [[s.bucket_key for s in rank_steps] for rank_steps in steps]
    assert all(k == keys[0] for k in keys)
    ids = [[i for s in rank_steps for i in s.example_ids if i != FILLER] for rank_steps in steps]
    flat = [i for rank_ids in ids for i in rank_ids]
    assert len(flat) == len(set(flat))
    kept = (ranks[0].assignment.bucket_index >= 0).nonzero().flatten().tolist()
    assert sorted(flat) == kept
    for rank_steps in steps:
        for step in rank_steps:
            assert len(step.example_ids) == ranks[0].batch_sizes[step.bucket_key]


@settings(max_examples=30, deadline=None)
@given(corpora(), st.integers(2, 3), st.integers(0, 3))
def test_ranks_together_take_the_rows_of_one_process_with_their_global_batch(
    corpus, world_size, seed
) -> None:
    lengths, config = corpus
    scheme = build_bucket_scheme(lengths, config)
    whole = {key: size * world_size for key, size in scheme.batch_sizes.items()}
    one = BucketBatchSampler(lengths, scheme.buckets, whole, overlong=config.overlong, seed=seed)
    ranks = [
        make_sampler(lengths, config, seed=seed, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    for step, *shares in zip(one, *ranks, strict=True):  # filler rows (the tail) included
        assert all(share.bucket_key == step.bucket_key for share in shares)
        assert [i for share in shares for i in share.example_ids] == list(step.example_ids)


def test_same_seed_and_epoch_give_the_same_plan_and_epochs_differ() -> None:
    lengths = torch.randint(1, 40, (500, 2), generator=torch.Generator().manual_seed(0))
    config = BucketingConfig(max_keys=6, token_budget=400)
    a, b = make_sampler(lengths, config, seed=7), make_sampler(lengths, config, seed=7)
    first = list(a)
    assert first == list(b)
    assert list(a) != first  # the next epoch is shuffled differently


def test_load_state_dict_refuses_other_data() -> None:
    lengths = torch.randint(1, 40, (100, 2), generator=torch.Generator().manual_seed(0))
    config = BucketingConfig(max_keys=4, token_budget=400)
    state = make_sampler(lengths, config, seed=1).state_dict()
    with pytest.raises(NmtBucketError, match="seed was 1, now 2"):
        make_sampler(lengths, config, seed=2).load_state_dict(state)


def test_resuming_with_another_number_of_ranks_is_refused_with_a_message() -> None:
    lengths = torch.randint(1, 40, (100, 2), generator=torch.Generator().manual_seed(0))
    config = BucketingConfig(max_keys=4, token_budget=400)
    state = make_sampler(lengths, config, rank=1, world_size=2).state_dict()
    with pytest.raises(NmtBucketError, match=r"world_size was 2, now 1.*number of training"):
        make_sampler(lengths, config).load_state_dict(state)


def test_only_the_default_bucket_gets_filler_rows() -> None:
    lengths = torch.randint(1, 40, (333, 2), generator=torch.Generator().manual_seed(3))
    sampler = make_sampler(lengths, BucketingConfig(max_keys=5, token_budget=500))
    for step in sampler:
        if FILLER in step.example_ids:
            assert step.bucket_key == sampler.default_bucket_key
