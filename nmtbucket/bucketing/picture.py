"""The picture of a bucket plan, ``buckets.png``.

The left panel is the length histogram: a heat map of (source length, target length) with every
key's rectangle and its padding, or for 1-D keys a histogram with a line at every key. The right
panel is the padding curve against the number of automatic keys, with the plan's own point.
matplotlib is an optional extra (``pip install 'nmtbucket[plot]'``); without it,
:func:`draw_plan` raises :class:`PlotUnavailable`, which says how to install it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from nmtbucket.bucketing.keys import key_lengths
from nmtbucket.bucketing.plan import BucketPlan
from nmtbucket.errors import NmtBucketError
from nmtbucket.files import atomic_write_bytes

INSTALL = "pip install 'nmtbucket[plot]'"


class PlotUnavailable(NmtBucketError):
    """matplotlib is not installed, so no picture can be drawn."""


def draw_plan(plan: BucketPlan, lengths: torch.Tensor, path: str | Path, title: str) -> Path:
    """Draw ``plan`` for examples of per-stream ``lengths`` (N, 1 or 2) into the PNG ``path``
    (written atomically); returns ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm
        from matplotlib.patches import Rectangle
    except ImportError:
        raise PlotUnavailable(f"drawing {path} needs matplotlib: {INSTALL}") from None
    panels = 2 if plan.curve else 1
    figure, axes = plt.subplots(1, panels, figsize=(7 * panels, 6), squeeze=False)
    histogram_axes, *curve_axes = axes[0]
    if lengths.shape[1] == 2:
        _heat_map(histogram_axes, plan, lengths, LogNorm, Rectangle, figure)
    else:
        _histogram(histogram_axes, plan, lengths)
    if curve_axes:
        _padding_curve(curve_axes[0], plan)
    figure.suptitle(title)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, lambda file: file.write(image.getvalue()))
    return Path(path)


def _heat_map(axes: Any, plan: BucketPlan, lengths: torch.Tensor, log_norm: Any, rectangle: Any,
              figure: Any) -> None:  # fmt: skip
    default = key_lengths(plan.scheme.default_bucket_key)
    largest = [max(int(lengths[:, i].max()), default[i]) for i in (0, 1)]
    counts = torch.zeros(largest[1] + 1, largest[0] + 1)  # (T, S): rows are target lengths
    clipped = torch.minimum(lengths, torch.tensor(largest))
    counts.index_put_((clipped[:, 1], clipped[:, 0]), torch.ones(len(lengths)), accumulate=True)
    counts[counts == 0] = float("nan")  # empty cells stay blank
    image = axes.imshow(
        counts.numpy(), origin="lower", norm=log_norm(), cmap="viridis", aspect="auto",
        extent=(-0.5, largest[0] + 0.5, -0.5, largest[1] + 0.5), interpolation="nearest",
    )  # fmt: skip
    figure.colorbar(image, ax=axes, label="examples")
    for load in plan.loads:
        source, target = key_lengths(load.key)
        axes.add_patch(
            rectangle((0.5, 0.5), source, target, fill=False, linewidth=0.8, edgecolor="red")
        )
        axes.annotate(
            f"{load.padding_percent:.0f}%", (source + 0.5, target + 0.5), fontsize=6,
            color="red", ha="right", va="top",
        )  # fmt: skip
    axes.set_xlabel("source length (tokens, EOS included)")
    axes.set_ylabel("target length (tokens, EOS included)")
    axes.set_title(
        f"{len(plan.loads)} keys (red: each key's rectangle and its padding %); "
        f"padding {plan.total.padding_percent:.2f} %",
        fontsize=9,
    )


def _histogram(axes: Any, plan: BucketPlan, lengths: torch.Tensor) -> None:
    largest = max(int(lengths.max()), key_lengths(plan.scheme.default_bucket_key)[0])
    counts = torch.bincount(lengths[:, 0].clamp(max=largest), minlength=largest + 1)
    axes.bar(range(largest + 1), counts.tolist(), width=1.0, color="tab:blue")
    for load in plan.loads:
        (length,) = key_lengths(load.key)
        axes.axvline(length + 0.5, color="red", linewidth=0.8)
        axes.annotate(
            f"{load.padding_percent:.0f}%", (length + 0.5, axes.get_ylim()[1]), fontsize=6,
            color="red", ha="right", va="top", rotation=90,
        )  # fmt: skip
    axes.set_xlabel("length (tokens, EOS included)")
    axes.set_ylabel("examples")
    axes.set_title(
        f"{len(plan.loads)} keys (red lines, with each key's padding %); "
        f"padding {plan.total.padding_percent:.2f} %",
        fontsize=9,
    )


def _padding_curve(axes: Any, plan: BucketPlan) -> None:
    keys = sorted(plan.curve)
    axes.plot(keys, [plan.curve[k] for k in keys], marker="o", label="automatic keys")
    axes.plot(
        [len(plan.loads)], [plan.total.padding_percent], marker="*", markersize=16,
        color="red", linestyle="none", label=f"this plan: {plan.total.name}",
    )  # fmt: skip
    for baseline, style in zip(plan.baselines, (":", "--"), strict=False):
        axes.axhline(
            baseline.padding_percent, linestyle=style, color="gray",
            label=f"{baseline.name} batching, no keys ({baseline.step_shapes} step shapes)",
        )  # fmt: skip
    axes.set_xscale("log", base=2)
    axes.set_xlabel("number of keys")
    axes.set_ylabel("padding % of computed tokens")
    axes.set_title("padding against the number of keys (one epoch)", fontsize=9)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
