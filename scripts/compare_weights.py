#!/usr/bin/env python
"""Compare the weights of two training runs, tensor by tensor: how far apart they are, and
whether they agree within a tolerance.

For the GPU check: the same run trained with ``trainer.executor=eager`` and with
``cuda_graph`` (same seed, batches and schedule, no dropout, float32) must end with the same
parameters up to rounding. An element agrees when ``|a - b| <= atol + rtol * |b|`` (as
``torch.isclose``). Reported: the largest absolute difference, the largest difference relative
to the tensor's own size (``||a - b|| / ||b||``), the elements outside the tolerance, and the
worst tensors.

  python scripts/compare_weights.py RUN_A RUN_B --rtol 1e-3 --atol 1e-4 --json parity.json

RUN_A and RUN_B are run folders (their ``checkpoints/last.pt``) or checkpoint files; the
exit status is 0 when every element agrees, 1 when some do not (0 with ``--exit-zero``, for a
caller that reads the JSON), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from nmtbucket.errors import NmtBucketError
from nmtbucket.training.checkpoint import LAST, load_checkpoint

WORST_SHOWN = 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="a run folder or checkpoint file")
    parser.add_argument("b", type=Path, help="the run to compare it with (the reference)")
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--json", type=Path, help="write the comparison here")
    parser.add_argument("--exit-zero", action="store_true", help="exit 0 when they differ")
    args = parser.parse_args()
    try:
        report = compare(_weights(args.a), _weights(args.b), args.rtol, args.atol)
    except NmtBucketError as err:
        print(f"compare_weights: {err}", file=sys.stderr)
        return 2
    report.update(a=str(args.a), b=str(args.b))
    print(
        f"{report['tensors']} tensors, {report['elements']} elements: max |a-b| "
        f"{report['max_abs_diff']:.3g}, max ||a-b||/||b|| {report['max_relative_norm']:.3g}, "
        f"{report['elements_outside']} outside rtol {args.rtol} / atol {args.atol}: "
        f"{'agree' if report['agree'] else 'DIFFER'}"
    )
    for row in report["worst"]:
        print(f"  {row['name']}: max |a-b| {row['max_abs_diff']:.3g}, "
              f"||a-b||/||b|| {row['relative_norm']:.3g}, {row['outside']} outside")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0 if report["agree"] or args.exit_zero else 1


def _weights(path: Path) -> dict[str, torch.Tensor]:
    """The model tensors of a run folder's ``last.pt`` or of a checkpoint file."""
    file = path / "checkpoints" / LAST if path.is_dir() else path
    state = load_checkpoint(file)
    model = state.get("model")
    if not isinstance(model, dict):
        raise NmtBucketError(f"{file} holds no model weights")
    return {name: t for name, t in model.items() if isinstance(t, torch.Tensor)}


def compare(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float, atol: float
) -> dict[str, Any]:
    """How far the tensors of ``a`` are from those of ``b`` (same names and shapes)."""
    if a.keys() != b.keys():
        raise NmtBucketError(f"the runs have different tensors: {sorted(a.keys() ^ b.keys())}")
    rows = []
    for name, reference in b.items():
        got, want = a[name].double(), reference.double()
        if got.shape != want.shape:
            raise NmtBucketError(f"{name}: shape {tuple(got.shape)} against {tuple(want.shape)}")
        diff = (got - want).abs()
        rows.append({
            "name": name,
            "elements": want.numel(),
            "max_abs_diff": float(diff.max()) if diff.numel() else 0.0,
            "relative_norm": float(diff.norm() / want.norm().clamp(min=1e-30)),
            "outside": int((~torch.isclose(got, want, rtol=rtol, atol=atol)).sum()),
        })  # fmt: skip
    outside = sum(row["outside"] for row in rows)
    return {
        "rtol": rtol,
        "atol": atol,
        "tensors": len(rows),
        "elements": sum(row["elements"] for row in rows),
        "max_abs_diff": max((row["max_abs_diff"] for row in rows), default=0.0),
        "max_relative_norm": max((row["relative_norm"] for row in rows), default=0.0),
        "elements_outside": outside,
        "agree": outside == 0,
        "worst": sorted(rows, key=lambda row: -row["max_abs_diff"])[:WORST_SHOWN],
    }


if __name__ == "__main__":
    sys.exit(main())
