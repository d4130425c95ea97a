"""The evaluator keeps every held-out line, in input order, and counts every target token."""

from __future__ import annotations

from pathlib import Path

import torch

from nmtbucket.bucketing.keys import LengthPair
from nmtbucket.bucketing.scheme import BucketScheme, build_bucket_scheme
from nmtbucket.config import BucketingConfig, DataConfig, SearchConfig, TokenizerConfig
from nmtbucket.data.prepare import prepare_data
from nmtbucket.search import Hypothesis
from nmtbucket.translation.evaluator import Evaluator, eval_scheme
from tests.integration.train_cli import write_tiny_corpus


def _copy_search(
    src: torch.Tensor, src_lengths: torch.Tensor, limits: torch.Tensor, state_len: int
) -> list[list[Hypothesis]]:
    """A stand-in for a model: 'translates' each row into its own source ids (EOS dropped)."""
    rows = [row[: int(n) - 1].tolist() for row, n in zip(src, src_lengths, strict=True)]
    return [[Hypothesis(tokens, 0.0, 0.0)] for tokens in rows]


def test_translations_come_back_in_input_order_and_nothing_is_dropped(tmp_path: Path) -> None:
    write_tiny_corpus(tmp_path / "data")
    config = DataConfig(root=str(tmp_path / "data"), dir="tiny", src_lang="en", tgt_lang="de")
    config.cache_dir = str(tmp_path / "cache")
    config.tokenizer = TokenizerConfig(vocab_size=40)
    data = prepare_data(config, progress=False, log=lambda message: None)
    scheme = build_bucket_scheme(data.train.lengths, BucketingConfig(max_keys=3))
    search = SearchConfig(token_budget=60)  # several decoding chunks
    evaluator = Evaluator(
        data.test, scheme, 200, data.tgt_tokenizer, search, torch.device("cpu"), progress=False
    )
    outputs = evaluator.translate(_copy_search)
    tokenizer = data.src_tokenizer  # joint: the same model
    expected = [tokenizer.decode(ids) for ids in tokenizer.encode(data.test.src_lines)]
    assert outputs == expected and outputs[2] == ""  # the empty line stays, in place
    assert evaluator.scheme.default_bucket_key != scheme.default_bucket_key  # the long line

    seen = [int(i) for batch in evaluator.iterator for i in batch.example_ids if i >= 0]
    assert sorted(seen) == list(range(len(data.test.dataset)))


def test_a_held_out_line_beyond_the_budget_gets_a_bucket_of_one_row() -> None:
    scheme = BucketScheme(
        (LengthPair(4, 4), LengthPair(8, 8)), {LengthPair(4, 4): 4, LengthPair(8, 8): 2}
    )
    lengths = torch.tensor([[3, 3], [50, 60]])
    extended = eval_scheme(scheme, lengths, token_budget=32)
    assert extended.buckets[-1] == LengthPair(50, 60)
    assert extended.batch_sizes[LengthPair(50, 60)] == 1
