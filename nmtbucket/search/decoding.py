"""Decoding many sentences: each source goes to the smallest source-length bucket that holds it
and is padded to exactly that length (one static shape per bucket), rows are batched within a
token budget, searched, and the results come back in input order."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from nmtbucket.bucketing.keys import LengthKey, key_lengths
from nmtbucket.config import SearchConfig
from nmtbucket.constants import PAD_ID
from nmtbucket.errors import NmtBucketError
from nmtbucket.models.base import Seq2Seq, StepDecoder
from nmtbucket.progress import Progress
from nmtbucket.search import Hypothesis, beam_search, max_output_lengths, static_beam_search
from nmtbucket.search.captured import CapturedDecoder

SearchFn = Callable[..., list[list[Hypothesis]]]
"""``search_fn(src (B, S), src_lengths (B,), max_output_lens (B,), state_len=L)``: each row's
hypotheses, with decoder state for ``L`` steps (the same for every batch of a bucket)."""


def define_source_buckets(buckets: Sequence[LengthKey]) -> list[int]:
    """The distinct source lengths of training keys, ascending: the decoding buckets."""
    return sorted({key_lengths(key)[0] for key in buckets})


def output_limits(src_lengths: torch.Tensor, search: SearchConfig) -> torch.Tensor:
    """(B,) decoder steps allowed for sources of ``src_lengths`` (B,) under ``search``."""
    return max_output_lengths(
        src_lengths, search.max_output_ratio, search.max_output_extra, search.max_output_len
    )


def bucket_output_limit(src_len: int, search: SearchConfig) -> int:
    """Decoder steps for the longest source of a bucket: its decoder state length."""
    return int(output_limits(torch.tensor([src_len]), search)[0])


def rows_per_batch(src_len: int, search: SearchConfig) -> int:
    """Sentences per batch of a bucket: rows x beam x (source length + output limit) stays
    within ``search.token_budget``, with at least one row."""
    limit = bucket_output_limit(src_len, search)
    return max(1, search.token_budget // (search.beam_size * (src_len + limit)))


def step_decoder(
    core: Seq2Seq[Any], search: SearchConfig, device: torch.device
) -> StepDecoder[Any]:
    """How decoder steps run, chosen by device in this one place: on a GPU replayed from CUDA
    graphs (``search.cuda_graphs``, the default), on the CPU the core's own eager steps, whose
    caches hold only the steps taken. Build it once and reuse it: graphs are captured on first
    use."""
    if device.type == "cuda" and search.cuda_graphs and not search.static_shapes:
        return CapturedDecoder(core)
    return core


def beam_search_fn(decoder: StepDecoder[Any], search: SearchConfig, nbest: int = 1) -> SearchFn:
    """The :data:`SearchFn` of beam search with ``decoder`` (see :func:`step_decoder`) and the
    beam size and length penalty of ``search`` (beam 1 is greedy): the search whose batch
    shrinks, or the static-shape one with ``search.static_shapes``."""
    search_fn = static_beam_search if search.static_shapes else beam_search
    return partial(
        search_fn, decoder, beam_size=search.beam_size, alpha=search.length_penalty, nbest=nbest
    )


def plan_batches(
    lengths: Sequence[int], src_buckets: Sequence[int], search: SearchConfig
) -> list[tuple[int, list[int]]]:
    """``(bucket source length, input indices)`` per batch, buckets ascending and inputs in
    their order within a bucket. Every length must be in 1 .. the largest bucket."""
    members: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        position = bisect.bisect_left(src_buckets, length)
        if length < 1 or position == len(src_buckets):
            raise NmtBucketError(
                f"source {index} (counting from 0) has {length} tokens; decoding needs 1 to "
                f"{src_buckets[-1]} (leave out empty sources and truncate longer ones first)"
            )
        members.setdefault(src_buckets[position], []).append(index)
    batches: list[tuple[int, list[int]]] = []
    for src_len in sorted(members):
        size = rows_per_batch(src_len, search)
        rows = members[src_len]
        batches.extend((src_len, rows[i : i + size]) for i in range(0, len(rows), size))
    return batches


def pad_sources(sources: Sequence[Sequence[int] | torch.Tensor], src_len: int) -> torch.Tensor:
    """(B, src_len) int64: each source followed by padding."""
    src = torch.full((len(sources), src_len), PAD_ID, dtype=torch.int64)
    for row, tokens in enumerate(sources):
        src[row, : len(tokens)] = torch.as_tensor(tokens, dtype=torch.int64)
    return src


def decode_in_buckets(
    sources: Sequence[Sequence[int] | torch.Tensor],
    src_buckets: Sequence[int],
    search: SearchConfig,
    search_fn: SearchFn,
    device: torch.device,
    progress: Progress | None = None,
) -> list[list[Hypothesis]]:
    """The hypotheses ``search_fn`` finds for every source (token ids, EOS included), in input
    order. ``progress`` (if given) advances by the sentences of each batch."""
    results: list[list[Hypothesis]] = [[] for _ in sources]
    lengths = [len(tokens) for tokens in sources]
    for src_len, indices in plan_batches(lengths, src_buckets, search):
        src = pad_sources([sources[i] for i in indices], src_len)  # (B, S)
        src_lengths = torch.tensor([lengths[i] for i in indices])  # (B,)
        limits = output_limits(src_lengths, search)  # (B,)
        state_len = bucket_output_limit(src_len, search)
        found = search_fn(
            src.to(device), src_lengths.to(device), limits.to(device), state_len=state_len
        )
        for index, hypotheses in zip(indices, found, strict=True):
            results[index] = hypotheses
        if progress is not None:
            progress.update(len(indices))
    return results
