"""``nmtbucket-export``: a trained run as a folder to share or serve, the weights in
safetensors (see :mod:`nmtbucket.translation.export`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nmtbucket.errors import NmtBucketError
from nmtbucket.training.kept_checkpoints import WEIGHT_CHOICES
from nmtbucket.translation.ctranslate2_export import QUANTIZATIONS, export_ctranslate2
from nmtbucket.translation.export import export_safetensors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nmtbucket-export",
        description=(
            "Export a run directory written by nmtbucket-train: model.safetensors (the chosen "
            "weights, no pickle), config.json, buckets.json and the sentencepiece models, which "
            "nmtbucket-translate checkpoint=OUTPUT translates with; or, with --ctranslate2, a "
            "CTranslate2 model of a Transformer run and its sentencepiece models."
        ),
        epilog="example: nmtbucket-export runs/multi30k_transformer exports/m30k --average 3",
    )
    parser.add_argument("run_dir", help="the run directory (runs/NAME)")
    parser.add_argument("output", help="the export folder to create (new, or empty)")
    parser.add_argument(
        "--weights",
        default="best",
        help=f"{' or '.join(WEIGHT_CHOICES)} or a checkpoint file, as for translation "
        "(default: best)",
    )
    parser.add_argument(
        "--average", type=int, default=1, help="average the K best or newest checkpoints"
    )
    parser.add_argument(
        "--ctranslate2",
        action="store_true",
        help="write a CTranslate2 model instead (Transformer runs; pip install "
        "'nmtbucket[ctranslate2]')",
    )
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        help="with --ctranslate2: store the weights so (default: float32)",
    )
    args = parser.parse_args(argv)
    try:
        if args.quantization and not args.ctranslate2:
            raise NmtBucketError("--quantization applies to --ctranslate2 only")
        export = export_ctranslate2 if args.ctranslate2 else export_safetensors
        options = {"quantization": args.quantization} if args.ctranslate2 else {}
        output = export(args.run_dir, args.output, args.weights, args.average, **options)
    except NmtBucketError as err:
        print(f"nmtbucket-export: error: {err}", file=sys.stderr)
        return 1
    print(f"exported {args.run_dir} ({args.weights}, average {args.average}) to {output}")
    return 0


def entry() -> None:
    """The ``nmtbucket-export`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
