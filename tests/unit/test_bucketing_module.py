"""BucketingModule: shared parameters, clear sym_gen errors, dispatch, equal losses across keys."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nmtbucket import (
    BucketExecutor,
    BucketingModule,
    LengthPair,
    NmtBucketError,
    SequenceDataset,
    SymGenError,
    TokenSequences,
    collate,
)
from nmtbucket.executors.interface import prepare_batch, step_and_update
from tests.toy_models import ToyCore, ToySeq2Seq, toy_sym_gen

DEFAULT = LengthPair(12, 14)


def make_module() -> BucketingModule:
    torch.manual_seed(0)
    return BucketingModule(toy_sym_gen(ToyCore()), DEFAULT)


def make_batch(key: LengthPair, rows: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def sequences(max_len: int) -> TokenSequences:
        lengths = torch.randint(1, max_len + 1, (rows,), generator=g).tolist()
        return TokenSequences.from_lists(
            [torch.randint(1, 11, (n,), generator=g).tolist() for n in lengths]
        )

    data = SequenceDataset(sequences(key.src_len), sequences(key.tgt_len))
    return collate(data, list(range(rows)), key, pad_id=0)


def test_default_key_is_built_first_and_others_on_first_use() -> None:
    module = make_module()
    assert module.built_bucket_keys == (DEFAULT,)
    assert module.current_bucket_key == DEFAULT
    small = LengthPair(5, 6)
    module(make_batch(small))
    assert module.current_bucket_key == small
    assert module.built_bucket_keys == (DEFAULT, small)
    module(make_batch(small, seed=1))
    assert module.built_bucket_keys == (DEFAULT, small)


def test_one_copy_of_each_parameter() -> None:
    module = make_module()
    for key in [LengthPair(3, 4), LengthPair(7, 9), LengthPair(5, 6)]:
        module(make_batch(key))
    expected = dict(module.default_module.named_parameters())
    params = list(module.parameters())
    assert len(params) == len(expected)
    assert len({p.data_ptr() for p in params}) == len(expected)
    state = module.state_dict()
    assert sorted(state) == sorted(f"default_module.{name}" for name in expected)
    for key in module.built_bucket_keys:
        for name, p in module.bucket_module(key).named_parameters():
            assert p is expected[name]


def test_sym_gen_with_new_parameters_is_rejected_by_name() -> None:
    def sym_gen(key):
        return ToySeq2Seq(ToyCore(), key)  # a fresh core for every key: new tensors

    module = BucketingModule(sym_gen, DEFAULT)
    with pytest.raises(SymGenError, match=r"new tensor for parameter 'core\.embed\.weight'"):
        module(make_batch(LengthPair(4, 4)))


def test_sym_gen_with_extra_or_missing_parameters_is_rejected() -> None:
    core = ToyCore()

    class Extra(ToySeq2Seq):
        def __init__(self, key):
            super().__init__(core, key)
            self.bias = nn.Parameter(torch.zeros(1))

    def extra_gen(key):
        return ToySeq2Seq(core, key) if key == DEFAULT else Extra(key)

    with pytest.raises(SymGenError, match="made parameter 'bias'"):
        BucketingModule(extra_gen, DEFAULT).bucket_module(LengthPair(3, 3))

    def missing_gen(key):
        return Extra(key) if key == DEFAULT else ToySeq2Seq(core, key)

    with pytest.raises(SymGenError, match=r"lacks parameters of the default bucket: \['bias'\]"):
        BucketingModule(missing_gen, DEFAULT).bucket_module(LengthPair(3, 3))


def test_sym_gen_must_return_a_module_and_keys_must_hash() -> None:
    with pytest.raises(SymGenError, match=r"not a torch\.nn\.Module"):
        BucketingModule(lambda key: "graph", 3)
    module = make_module()
    with pytest.raises(NmtBucketError, match="not hashable"):
        module.bucket_module([3, 4])
    with pytest.raises(NmtBucketError, match="has no bucket_key attribute"):
        module(torch.zeros(2))


def test_loss_through_own_bucket_equals_loss_through_default_bucket() -> None:
    module = make_module()
    for seed, key in enumerate([LengthPair(4, 5), LengthPair(9, 3), LengthPair(12, 14)]):
        batch = make_batch(key, rows=4, seed=seed)
        own = module(batch)
        padded = module(batch.pad_to(DEFAULT, pad_id=0))
        assert module.current_bucket_key == DEFAULT
        torch.testing.assert_close(own, padded, rtol=1e-5, atol=1e-6)


def test_one_optimizer_trains_every_bucket() -> None:
    module = make_module()
    optimizer = torch.optim.Adam(module.parameters(), lr=0.05)

    def step(bucket_module: nn.Module, batch) -> torch.Tensor:
        optimizer.zero_grad()
        loss = bucket_module(batch)
        loss.backward()
        optimizer.step()
        return loss

    batches = [make_batch(LengthPair(4, 5), seed=1), make_batch(LengthPair(10, 8), seed=2)]
    with torch.no_grad():
        before = [float(module(b)) for b in batches]
    for _ in range(30):
        for batch in batches:
            loss = module.train_step(batch, step)
            assert not loss.requires_grad
    with torch.no_grad():
        after = [float(module(b)) for b in batches]
    assert all(a < 0.5 * b for a, b in zip(after, before, strict=True))


def test_train_eval_and_to_reach_every_bucket() -> None:
    module = make_module()
    other = module.bucket_module(LengthPair(3, 3))
    module.eval()
    assert not other.training
    module.train()
    assert other.training
    module.to(torch.float64)
    assert other.core.embed.weight.dtype == torch.float64
    assert other.mix.dtype == torch.float64  # a buffer of a bucket that is not a submodule
    with torch.no_grad():
        assert float(module(make_batch(LengthPair(3, 3)))) > 0


def test_apply_converts_every_tensor_exactly_once() -> None:
    module = make_module()
    other = module.bucket_module(LengthPair(3, 3))
    bias, mix = module.default_module.core.out.bias.detach().clone(), other.mix.clone()
    module._apply(lambda t: t + 1 if t.is_floating_point() else t)
    torch.testing.assert_close(module.default_module.core.out.bias.detach(), bias + 1)
    torch.testing.assert_close(other.mix, mix + 1)
    assert other.core.out.bias is module.default_module.core.out.bias


def test_an_executor_class_is_its_own_factory_and_preparing_steps_are_prepared() -> None:
    class PlainExecutor(BucketExecutor):
        """A user's executor class, passed as the factory as EagerExecutor is."""

        def forward(self, batch):
            return self.module(batch)

        def run_step(self, batch, step_fn, update, apply_update) -> torch.Tensor:
            prepare_batch(step_fn, batch)
            return step_and_update(self.module, batch, step_fn, update, apply_update)

    module = BucketingModule(toy_sym_gen(ToyCore()), DEFAULT, PlainExecutor).to("cpu")
    prepared: list[LengthPair] = []

    class PreparingOnly:
        """A step with host-side preparation and no carried state."""

        def prepare(self, batch) -> None:
            prepared.append(batch.bucket_key)

        def __call__(self, bucket_module: nn.Module, batch) -> torch.Tensor:
            loss = bucket_module(batch)
            loss.backward()
            return loss

    module.train_step(make_batch(LengthPair(4, 5)), PreparingOnly())
    module.release_executors()
    assert prepared == [LengthPair(4, 5)]
