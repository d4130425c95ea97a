"""Decoding a trained encoder-decoder: output length limits, greedy search and batched beam
search (whose batch shrinks, or with static shapes) built from small tested pieces."""

from nmtbucket.search.beam import beam_search
from nmtbucket.search.beam_pieces import Hypothesis, length_penalty
from nmtbucket.search.greedy import greedy_search, greedy_steps
from nmtbucket.search.limits import max_output_lengths, trim_outputs
from nmtbucket.search.static_beam import static_beam_search

__all__ = [
    "Hypothesis",
    "beam_search",
    "greedy_search",
    "greedy_steps",
    "length_penalty",
    "max_output_lengths",
    "static_beam_search",
    "trim_outputs",
]
