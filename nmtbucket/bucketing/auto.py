"""Automatic bucket keys: choose at most K keys from the joint length histogram so that the
padded tokens of the whole corpus, each example padded to its cheapest covering key, are few.

The search is greedy (add the key that removes the most padding) followed by swap passes (drop
one key, put back the best replacement) until no swap helps. It works for 1-D and 2-D keys;
candidate edges are the lengths that occur in the data, since an optimal edge always sits on one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nmtbucket.bucketing.buckets import sort_buckets
from nmtbucket.bucketing.keys import LengthKey, make_length_key
from nmtbucket.errors import BucketConfigError

_CANDIDATE_CHUNK = 512


class _Histogram:
    """Distinct length vectors (cells) with counts, and the candidate keys to choose from."""

    def __init__(self, lengths: torch.Tensor) -> None:
        cells, counts = torch.unique(lengths, dim=0, return_counts=True)
        self.cells = cells.to(torch.float64)  # (C, d)
        self.counts = counts.to(torch.float64)  # (C,)
        per_stream = [torch.unique(cells[:, j]) for j in range(cells.shape[1])]
        grids = torch.meshgrid(*per_stream, indexing="ij")
        self.candidates = torch.stack([g.reshape(-1) for g in grids], dim=1).to(torch.float64)
        self.candidate_cost = self.candidates.sum(dim=1)  # (M,) padded tokens of one row
        self.largest = len(self.candidates) - 1  # meshgrid of sorted edges: last is the max

    def covers(self, start: int, stop: int) -> torch.Tensor:
        """(m, C) whether candidate keys ``start:stop`` fit each cell."""
        keys = self.candidates[start:stop]
        return (self.cells[None, :, :] <= keys[:, None, :]).all(dim=2)

    def row_costs(self, chosen: Sequence[int]) -> torch.Tensor:
        """(len(chosen), C) padded tokens of one example of each cell in each key (inf: no fit)."""
        index = torch.tensor(list(chosen))
        fits = (self.cells[None, :, :] <= self.candidates[index][:, None, :]).all(dim=2)
        cost = self.candidate_cost[index][:, None].expand_as(fits)
        return torch.where(fits, cost, torch.full_like(cost, float("inf")))

    def savings(self, current: torch.Tensor) -> torch.Tensor:
        """(M,) padded tokens removed by adding each candidate to keys whose cost per cell is
        ``current`` (C,)."""
        out = torch.empty(len(self.candidates), dtype=torch.float64)
        for start in range(0, len(self.candidates), _CANDIDATE_CHUNK):
            stop = min(start + _CANDIDATE_CHUNK, len(self.candidates))
            gain = (current[None, :] - self.candidate_cost[start:stop, None]).clamp(min=0)
            out[start:stop] = (gain * self.counts[None, :] * self.covers(start, stop)).sum(dim=1)
        return out

    def total(self, current: torch.Tensor) -> float:
        return float((current * self.counts).sum())


def define_buckets(
    lengths: torch.Tensor, max_keys: int, max_swap_passes: int = 4
) -> list[LengthKey]:
    """At most ``max_keys`` keys that minimise padded tokens for these examples.

    ``lengths`` is (N, d), d = 1 or 2: per-stream lengths of the examples to bucket (already
    filtered or truncated by the over-long policy). The largest key, the per-stream maximum, is
    always included so every example fits; it becomes the default bucket key.
    """
    if max_keys < 1:
        raise BucketConfigError(f"max_keys must be >= 1, got {max_keys}")
    if lengths.ndim != 2 or lengths.shape[0] == 0 or lengths.shape[1] not in (1, 2):
        raise BucketConfigError(
            "need (N, 1) or (N, 2) lengths of at least one example, "
            f"got shape {tuple(lengths.shape)}"
        )
    if int(lengths.min()) < 1:
        raise BucketConfigError("every example needs length >= 1 in every stream")
    hist = _Histogram(lengths)
    chosen = [hist.largest]
    current = hist.row_costs(chosen).min(dim=0).values  # (C,)
    while len(chosen) < max_keys:
        gains = hist.savings(current)
        best = int(gains.argmax())
        if gains[best] <= 0:
            break  # every cell already sits in a key of its exact size
        chosen.append(best)
        current = torch.minimum(current, hist.row_costs([best])[0])
    chosen = _swap_until_stable(hist, chosen, max_swap_passes)
    keys = (make_length_key([int(v) for v in hist.candidates[i]]) for i in chosen)
    return sort_buckets(keys)


def _swap_until_stable(hist: _Histogram, chosen: list[int], max_passes: int) -> list[int]:
    """Local search: replace any one key (but the largest) by the best candidate if that helps."""
    chosen = list(chosen)
    for _ in range(max_passes):
        improved = False
        for slot in range(1, len(chosen)):
            costs = hist.row_costs(chosen)  # (K, C)
            before = hist.total(costs.min(dim=0).values)
            without = torch.cat([costs[:slot], costs[slot + 1 :]]).min(dim=0).values
            gains = hist.savings(without)
            best = int(gains.argmax())
            after = hist.total(without) - float(gains[best])
            if after < before - 0.5 and best not in chosen:
                chosen[slot] = best
                improved = True
        if not improved:
            break
    return chosen
