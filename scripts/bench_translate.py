#!/usr/bin/env python
"""Translation benchmark: test-set BLEU/chrF, sentences and output pieces per second of a
trained run, side by side with other systems on the same machine in one run.

Systems (each at every ``--beams`` size):

- ``nmtbucket``: this checkout, through the Python API
  (``Translator.from_checkpoint(run).translate(lines)``), for each ``--weights`` choice,
  ``--length-penalties`` alpha and ``--token-budgets`` value;
- ``nmtbucket-static`` (``--static``): the same with ``search.static_shapes=true``;
- ``nmtbucket-previous`` (``--previous CHECKOUT``): another nmtbucket checkout (for example the
  commit before a change, ``git worktree add ../before HEAD~1``) on the same run;
- ``opennmt`` (``--opennmt MODEL.pt``): ``onmt_translate`` of the peers harness
  (``../shared/peers``, ``$PEERS_VENVS``, ``$PEERS_WORK``) on the harness's source pieces, with
  its settings: ``--opennmt-batch-sizes`` sentences per batch (the harness's 64 by default),
  ``-length_penalty wu -alpha 1.0``, CPU, the same threads. Its time is its own ``Total
  translation time``; its pieces are decoded with the harness's sentencepiece model and scored
  against the same raw reference.

Every measurement translates the whole split once in a fresh process (nmtbucket's in a worker
with the checkout first on ``PYTHONPATH``, which checks the code it ran), so that every system
starts alike, as a command-line user's would; the systems take turns,
``--repeats`` rounds, and the table gives medians. nmtbucket's times include tokenising and
detokenising (model loading and one untimed warm-up batch excluded). Output pieces: every system's
translations re-encoded with the run's target sentencepiece model, so all count in one unit.
At beam 1, nmtbucket's outputs are also compared with plain greedy search's.

  python scripts/bench_translate.py runs/multi30k_transformer_cpu --beams 1 5 \\
      --previous ../before --opennmt $PEERS_WORK/runs/opennmt-1000u/model/model_step_1000.pt \\
      --json bench/results/translate-side-by-side.json
  python scripts/bench_translate.py runs/multi30k_transformer_cpu --beams 5 \\
      --weights best last:5 --repeats 1     # checkpoint choices
  python scripts/bench_translate.py runs/multi30k_transformer_cpu --split val --beams 5 \\
      --repeats 1 --length-penalties 0 0.6 1 1.5 2   # choose the length penalty on val
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sentencepiece
import torch

from nmtbucket.config import SearchConfig
from nmtbucket.data.corpus import read_lines
from nmtbucket.data.tokenizer import SentencePieceTokenizer
from nmtbucket.search import Hypothesis, greedy_search
from nmtbucket.search.decoding import decode_in_buckets
from nmtbucket.translation.run_folder import RunFolder
from nmtbucket.translation.scores import translation_scores
from nmtbucket.translation.translator import Translator

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"

# Times one whole translation with the public API of whatever nmtbucket is first on the path.
WORKER = """
import json, sys, time, torch
import nmtbucket
from nmtbucket.config import SearchConfig
from nmtbucket.translation.translator import Translator
run, source, weights, average, beam, alpha, budget, static, device, threads, out = sys.argv[1:]
torch.set_num_threads(int(threads))
search = SearchConfig(beam_size=int(beam), length_penalty=float(alpha), token_budget=int(budget))
if static == "1":
    search.static_shapes = True
translator = Translator.from_checkpoint(
    run, weights=weights, average=int(average), search=search, device=device
)
lines = open(source, encoding="utf-8").read().split("\\n")[:-1]
translator.translate(lines[:32])  # warm-up: first-call allocations, thread pools
started = time.perf_counter()
outputs = translator.translate(lines)
seconds = time.perf_counter() - started
result = {"seconds": seconds, "outputs": outputs, "code": nmtbucket.__file__}
json.dump(result, open(out, "w", encoding="utf-8"))
"""


def parse_weights(spec: str) -> tuple[str, int]:
    """``best``, ``last``, ``best:K`` or ``last:K`` (average K) into (weights, average)."""
    name, _, count = spec.partition(":")
    return name, int(count or 1)


def read_split(
    folder: RunFolder, data_root: str | None, split: str | None
) -> tuple[list[str], list[str], str, Path]:
    """Source and reference lines of a split of the run's corpus (default: its test split), the
    split's name and the reference file."""
    data = folder.config["data"]
    if data["task"] != "parallel":
        raise SystemExit("this benchmark reads a parallel corpus; the run used another task")
    root = Path(data_root or data["root"] or os.environ.get("NMTBUCKET_DATA_ROOT", ""))
    split = split or data["test"]
    base = root / data["dir"] / split
    src = read_lines(f"{base}.{data['src_lang']}")
    reference = Path(f"{base}.{data['tgt_lang']}")
    return src, read_lines(reference), split, reference


def same_as_greedy(translator: Translator, lines: list[str], outputs: list[str]) -> int:
    """How many of ``outputs`` (beam 1 of ``lines``) equal plain greedy search's."""
    src = translator.encode(lines)

    def greedy(
        src: torch.Tensor, lengths: torch.Tensor, limits: torch.Tensor, state_len: int
    ) -> list[list[Hypothesis]]:
        return [
            [Hypothesis(t, 0.0, 0.0)] for t in greedy_search(translator.core, src, lengths, limits)
        ]

    found = decode_in_buckets(
        [s for s in src if s], translator.src_buckets, translator.search, greedy, translator.device
    )
    texts = iter(translator.tgt_tokenizer.decode(h[0].tokens) for h in found)
    greedy_outputs = [next(texts) if s else "" for s in src]
    return sum(a == b for a, b in zip(outputs, greedy_outputs, strict=True))


@dataclass
class Variant:
    """One system at one setting: ``translate()`` translates the whole split once and returns
    the seconds it took (as the system reports them) and the detokenised outputs."""

    system: str
    settings: dict[str, Any]
    translate: Callable[[], tuple[float, list[str]]]
    seconds: list[float] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    output_pieces: int = 0

    @property
    def label(self) -> str:
        values = "  ".join(f"{k} {v}" for k, v in self.settings.items())
        return f"{self.system:<18} {values}"


def nmtbucket_variant(
    args: argparse.Namespace,
    system: str,
    checkout: Path,
    source: Path,
    setting: Setting,
    scratch: Path,
) -> Variant:
    """nmtbucket's Translator from ``checkout`` (this one, or ``--previous``) at ``setting``,
    timed in a fresh worker process per measurement (as each OpenNMT-py measurement is a fresh
    ``onmt_translate``), which checks that it ran the code of ``checkout``."""
    weights, average = parse_weights(setting.weights)
    out = scratch / f"{system}-{len(list(scratch.iterdir()))}.json"
    # -P: the working directory (perhaps this checkout) is not put before PYTHONPATH
    worker = [sys.executable, "-P", "-c", WORKER, str(args.run), str(source), weights]
    worker += [str(average), str(setting.beam), str(setting.alpha), str(setting.budget)]
    worker += [str(int(setting.static)), args.device, str(torch.get_num_threads()), str(out)]
    checkout = checkout.resolve()
    env = dict(os.environ, PYTHONPATH=str(checkout))

    def translate() -> tuple[float, list[str]]:
        done = subprocess.run(worker, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the {system} worker failed:\n{done.stderr[-3000:]}")
        result = json.loads(out.read_text(encoding="utf-8"))
        if not Path(result["code"]).is_relative_to(checkout):
            raise SystemExit(f"{system} ran {result['code']}, not the code in {checkout}")
        return result["seconds"], result["outputs"]

    settings = {"weights": setting.weights, "beam_size": setting.beam}
    settings |= {"length_penalty": setting.alpha, "token_budget": setting.budget}
    return Variant(system, settings, translate)


@dataclass(frozen=True)
class Setting:
    """One nmtbucket configuration to time."""

    weights: str
    beam: int
    alpha: float
    budget: int
    static: bool = False


def opennmt_variant(args: argparse.Namespace, beam: int, batch_size: int, scratch: Path) -> Variant:
    """``onmt_translate`` of the peers harness, with the harness's settings and ``batch_size``
    sentences per batch."""
    venvs = Path(os.environ.get("PEERS_VENVS", PEERS / ".venvs"))
    work = Path(os.environ.get("PEERS_WORK", PEERS / "work"))
    binary = venvs / "opennmt" / "bin" / "onmt_translate"
    pieces = work / "pieces" / f"{args.peers_split}.en"
    for needed in (binary, pieces, work / "spm" / "joint.model"):
        if not needed.exists():
            raise SystemExit(f"{needed} not found: run peers/setup.sh opennmt and peers/prep.sh")
    decoder = sentencepiece.SentencePieceProcessor(model_file=str(work / "spm" / "joint.model"))
    out = scratch / f"opennmt-{beam}-{batch_size}.pieces"
    threads = str(torch.get_num_threads())
    command = [str(binary), "-model", str(args.opennmt), "-src", str(pieces), "-output", str(out)]
    command += ["-beam_size", str(beam), "-batch_size", str(batch_size), "-batch_type", "sents"]
    command += ["-length_penalty", "wu", "-alpha", "1.0", "-gpu", "-1", "-report_time"]
    # OpenNMT-py 3.5.1 checkpoints pickle an argparse.Namespace, which torch >= 2.6 refuses to
    # load by default; this is PyTorch's own switch back (as in the peers harness).
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    env |= {"CUDA_VISIBLE_DEVICES": "", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}

    def translate() -> tuple[float, list[str]]:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        found = re.search(r"Total translation time \(s\): ([\d.]+)", done.stdout + done.stderr)
        if found is None:
            raise SystemExit(f"no 'Total translation time' from onmt_translate:\n{done.stderr}")
        lines = out.read_text(encoding="utf-8").split("\n")[:-1]
        return float(found.group(1)), [decoder.decode(line.split()) for line in lines]

    settings = {"beam_size": beam, "length_penalty": 1.0, "batch_size": batch_size}
    return Variant("opennmt", settings, translate)


def build_variants(args: argparse.Namespace, source: Path, scratch: Path) -> list[Variant]:
    variants = []
    main_weights, main_budget = args.weights[0], args.token_budgets[0]
    for alpha in args.length_penalties:
        settings = [Setting(main_weights, beam, alpha, main_budget) for beam in args.beams]
        settings += [Setting(w, max(args.beams), alpha, main_budget) for w in args.weights[1:]]
        settings += [
            Setting(main_weights, beam, alpha, budget)
            for budget in args.token_budgets[1:]
            for beam in args.beams
        ]
        if args.static:
            settings += [Setting(main_weights, b, alpha, main_budget, True) for b in args.beams]
        for setting in settings:
            system = "nmtbucket-static" if setting.static else "nmtbucket"
            variants.append(nmtbucket_variant(args, system, REPO, source, setting, scratch))
        if args.previous:
            variants += [
                nmtbucket_variant(
                    args,
                    "nmtbucket-previous",
                    Path(args.previous),
                    source,
                    Setting("best", beam, alpha, main_budget),
                    scratch,
                )
                for beam in args.beams
            ]
    if args.opennmt:
        variants += [
            opennmt_variant(args, beam, size, scratch)
            for size in args.opennmt_batch_sizes
            for beam in args.beams
        ]
    return variants


def report(
    args: argparse.Namespace,
    variant: Variant,
    src: list[str],
    references: list[str],
    tokenizer: SentencePieceTokenizer,
) -> dict[str, Any]:
    """The variant's row: scores, median speed, and for nmtbucket at beam 1 how many outputs
    equal plain greedy search's."""
    scores = translation_scores(variant.outputs, references)
    median = statistics.median(variant.seconds)
    pieces = sum(len(ids) for ids in tokenizer.encode(variant.outputs))
    row = {"system": variant.system, **variant.settings}
    row |= {
        "bleu": scores.bleu,
        "chrf": scores.chrf,
        "bleu_signature": scores.bleu_signature,
        "seconds": variant.seconds,
        "median_seconds": median,
        "sentences_per_second": len(references) / median,
        "output_pieces": pieces,
        "output_pieces_per_second": pieces / median,
        "same_as_greedy": None,
    }
    if variant.system in ("nmtbucket", "nmtbucket-static") and variant.settings["beam_size"] == 1:
        weights, average = parse_weights(variant.settings["weights"])
        search = SearchConfig(beam_size=1, token_budget=variant.settings["token_budget"])
        search.static_shapes = variant.system == "nmtbucket-static"
        translator = Translator.from_checkpoint(
            args.run, weights=weights, average=average, search=search, device=args.device
        )
        row["same_as_greedy"] = same_as_greedy(translator, src, variant.outputs)
    print(
        f"{variant.label}  BLEU {row['bleu']:.2f}  chrF {row['chrf']:.2f}  "
        f"{row['sentences_per_second']:.1f} sent/s  {row['output_pieces_per_second']:.0f} "
        f"pieces/s (median of {len(variant.seconds)})",
        flush=True,
    )
    return row


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory written by nmtbucket-train")
    parser.add_argument("--data-root", help="default: the run's data.root, $NMTBUCKET_DATA_ROOT")
    parser.add_argument("--split", help="the corpus split to translate (default: the test split)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument(
        "--weights",
        nargs="+",
        default=["best"],
        help="checkpoints: best, last, best:K or last:K (average K); the first is timed at "
        "every beam size, the others only at the largest",
    )
    parser.add_argument(
        "--length-penalties",
        type=float,
        nargs="+",
        default=[1.0],
        help="GNMT alphas; every nmtbucket variant runs with each",
    )
    parser.add_argument(
        "--token-budgets",
        type=int,
        nargs="+",
        default=[SearchConfig.token_budget],
        help="search.token_budget values; the first is the main one, the others are timed with "
        "the first --weights at every beam size",
    )
    parser.add_argument("--static", action="store_true", help="also time static_shapes=true")
    parser.add_argument("--previous", help="another nmtbucket checkout to time on the same run")
    parser.add_argument("--opennmt", type=Path, help="an OpenNMT-py checkpoint to time")
    parser.add_argument(
        "--opennmt-batch-sizes",
        type=int,
        nargs="+",
        default=[64],
        help="OpenNMT-py sentences per batch (the harness's is 64); every one at every beam",
    )
    parser.add_argument(
        "--peers-split", default="test2016", help="the harness's piece file of --split"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    folder = RunFolder.open(args.run)
    src, references, split, reference_file = read_split(folder, args.data_root, args.split)
    _, tgt_tokenizer = folder.tokenizers()
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "source.txt"
        source.write_text("".join(line + "\n" for line in src), encoding="utf-8")
        variants = build_variants(args, source, Path(scratch))
        for round_ in range(args.repeats):  # systems take turns: drift hits them alike
            for variant in variants:
                seconds, variant.outputs = variant.translate()
                variant.seconds.append(seconds)
                print(f"round {round_ + 1}: {variant.label}  {seconds:.2f} s", flush=True)
    print()
    rows = [report(args, v, src, references, tgt_tokenizer) for v in variants]
    result = {
        "benchmark": "translate",
        "run": str(args.run),
        "split": split,
        "reference": str(reference_file),
        "sentences": len(src),
        "token_budgets": args.token_budgets,
        "rows": rows,
        "device": args.device,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "torch": torch.__version__,
        "threads": args.threads,
        "command": " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
