"""Decoding many sentences: each source goes to the smallest source-length bucket that holds it
and is padded to exactly that length (one static shape per bucket), rows are batched within a
token budget, searched, and the results come back in input order."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from tqdm import tqdm

from nmtbucket.bucketing.keys import LengthKey, key_lengths
from nmtbucket.config import SearchConfig
from nmtbucket.constants import PAD_ID
from nmtbucket.errors import NmtBucketError
from nmtbucket.models.base import Seq2Seq, StepDecoder
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


def uses_cuda_graphs(search: SearchConfig, device: torch.device) -> bool:
    """The decoding policy, chosen by device in this one place: on a GPU, decoder steps are
    replayed from CUDA graphs (unless ``search.cuda_graphs`` is false or the static search is
    asked for); on the CPU they run eagerly, with caches that hold only the steps taken."""
    return device.type == "cuda" and search.cuda_graphs and not search.static_shapes


def pads_to_buckets(search: SearchConfig, device: torch.device) -> bool:
    """Whether sources are padded to their bucket's length, one source shape per bucket (what
    graphs and the static search need), or batched in order of length, each batch padded to
    its longest source (fewer, fuller batches: fewer steps on the CPU)."""
    return search.static_shapes or uses_cuda_graphs(search, device)


def step_decoder(
    core: Seq2Seq[Any], search: SearchConfig, device: torch.device
) -> StepDecoder[Any]:
    """``core`` itself, or with :func:`uses_cuda_graphs` its steps replayed from CUDA graphs.
    Build it once and reuse it: graphs are captured on first use."""
    return CapturedDecoder(core) if uses_cuda_graphs(search, device) else core


def beam_search_fn(decoder: StepDecoder[Any], search: SearchConfig, nbest: int = 1) -> SearchFn:
    """The :data:`SearchFn` of beam search with ``decoder`` (see :func:`step_decoder`) and the
    beam size and length penalty of ``search`` (beam 1 is greedy): the search whose batch
    shrinks, or the static-shape one with ``search.static_shapes``."""
    search_fn = static_beam_search if search.static_shapes else beam_search
    return partial(
        search_fn, decoder, beam_size=search.beam_size, alpha=search.length_penalty, nbest=nbest
    )


def plan_batches(
    lengths: Sequence[int],
    src_buckets: Sequence[int],
    search: SearchConfig,
    pad_to_buckets: bool = True,
) -> list[tuple[int, list[int]]]:
    """``(padded source length, input indices)`` per batch, each within ``search.token_budget``
    (see :func:`rows_per_batch`). Every length must be in 1 .. the largest bucket.

    ``pad_to_buckets``: each input goes to the smallest bucket that holds it and is padded to
    its length; buckets ascending, inputs in their order within a bucket. Otherwise inputs are
    taken in order of length (stable) and cut into batches as large as the budget allows,
    each padded to its longest input."""
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
    if pad_to_buckets:
        for src_len in sorted(members):
            size = rows_per_batch(src_len, search)
            rows = members[src_len]
            batches.extend((src_len, rows[i : i + size]) for i in range(0, len(rows), size))
        return batches
    by_length = sorted(range(len(lengths)), key=lengths.__getitem__)
    batch: list[int] = []
    for index in by_length:  # the longest so far is the one just taken
        if batch and len(batch) + 1 > rows_per_batch(lengths[index], search):
            batches.append((lengths[batch[-1]], batch))
            batch = []
        batch.append(index)
    if batch:
        batches.append((lengths[batch[-1]], batch))
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
    progress: tqdm[Any] | None = None,
) -> list[list[Hypothesis]]:
    """The hypotheses ``search_fn`` finds for every source (token ids, EOS included), in input
    order, batched as :func:`pads_to_buckets` says for ``device``. ``progress`` (if given)
    advances by the sentences of each batch."""
    results: list[list[Hypothesis]] = [[] for _ in sources]
    lengths = [len(tokens) for tokens in sources]
    to_buckets = pads_to_buckets(search, device)
    for src_len, indices in plan_batches(lengths, src_buckets, search, to_buckets):
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
