"""How long saving the training state blocks the training step, with the fault-tolerant save
(``last.pt`` kept as ``previous.pt``) against the plain atomic save nmtbucket used before it,
side by side on one state (for example a trained run's ``checkpoints/last.pt``), rounds
interleaved; plus the one-off cost at start of hashing a corpus for the resume identity check.

    python scripts/bench_save.py /work/runs/m30k_transformer_1400u/checkpoints/last.pt \\
        --hash-files /work/shared/data/multi30k/train.de /work/shared/data/multi30k/train.en \\
        --repeats 15 --json bench/results/save-cpu-2026-12-01/save.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from nmtbucket.files import file_sha256
from nmtbucket.training.checkpoint import CheckpointKeeper, load_checkpoint, save_checkpoint


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state", type=Path, help="a training state to save (a last.pt)")
    parser.add_argument("--repeats", type=int, default=15, help="rounds of each variant")
    parser.add_argument("--hash-files", type=Path, nargs="*", default=[], help="corpus files")
    parser.add_argument("--directory", type=Path, help="where to save (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    state = load_checkpoint(args.state)
    with tempfile.TemporaryDirectory(dir=args.directory) as folder:
        keeper = CheckpointKeeper(Path(folder) / "kept", keep_best=1, higher_is_better=True)
        plain = Path(folder) / "plain" / "last.pt"
        variants = {
            "plain atomic save (before)": lambda: save_checkpoint(plain, state),
            "last.pt + previous.pt (now)": lambda: keeper.save_last(state),
        }
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for save in variants.values():  # a first save of each: files exist from then on
            save()
        for _ in range(args.repeats):
            for name, save in variants.items():
                started = time.perf_counter()
                save()
                seconds[name].append(time.perf_counter() - started)
        size = (Path(folder) / "kept" / "last.pt").stat().st_size
    hashing = []
    for path in args.hash_files:
        started = time.perf_counter()
        file_sha256(path)
        hashing.append({"file": str(path), "bytes": path.stat().st_size,
                        "seconds": time.perf_counter() - started})  # fmt: skip
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    before, now = medians.values()
    results = {
        "command": " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "state_bytes": size,
        "repeats": args.repeats,
        "seconds": seconds,
        "median_seconds": medians,
        "ratio_now_to_before": now / before,
        "hashing_at_start": hashing,
    }
    for name, median in medians.items():
        print(f"{name:32s} median {1000 * median:8.1f} ms  ({size / 2**20:.1f} MiB)")
    print(f"now / before: {now / before:.3f}")
    for entry in hashing:
        print(f"sha256 of {entry['file']} ({entry['bytes'] / 2**20:.1f} MiB): "
              f"{1000 * entry['seconds']:.1f} ms")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
