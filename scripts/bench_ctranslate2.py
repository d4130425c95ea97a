"""nmtbucket against its own model converted to CTranslate2 (float32 and int8), side by side on
one test split: sentences/s (median of the rounds, systems interleaved) and sacreBLEU BLEU.

    python scripts/bench_ctranslate2.py /work/runs/m30k_transformer_1400u \\
        --source ../shared/data/multi30k/test2016.en \\
        --reference ../shared/data/multi30k/test2016.de --beam 5 --threads 2 --rounds 3 \\
        --json bench/results/ctranslate2-cpu-2026-12-01/results.json

Needs ``pip install 'nmtbucket[ctranslate2]'``. nmtbucket decodes with its defaults (search.*)
at the given beam; CTranslate2 with the same beam, length penalty 1.0 (its own normalisation:
the scores differ slightly from nmtbucket's GNMT penalty), batches of 64 sentences, and
min_decoding_length 0 as nmtbucket allows an empty output.
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

import sacrebleu
import sentencepiece as spm
import torch

from nmtbucket.config import SearchConfig
from nmtbucket.data.corpus import read_lines
from nmtbucket.translation.ctranslate2_export import export_ctranslate2
from nmtbucket.translation.translator import Translator


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import ctranslate2

    torch.set_num_threads(args.threads)
    sources, references = read_lines(args.source), read_lines(args.reference)
    search = SearchConfig(beam_size=args.beam)
    ours = Translator.from_checkpoint(args.run_dir, search=search, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        systems = {"nmtbucket": ours.translate}
        for quantization in (None, "int8"):
            model = Path(folder) / (quantization or "float32")
            export_ctranslate2(args.run_dir, model, quantization=quantization)
            systems[f"CTranslate2 {quantization or 'float32'}"] = _ctranslate2(
                ctranslate2, model, args.beam, args.threads
            )
        seconds: dict[str, list[float]] = {name: [] for name in systems}
        outputs: dict[str, list[str]] = {}
        for _ in range(args.rounds):
            for name, translate in systems.items():
                started = time.perf_counter()
                outputs[name] = translate(sources)
                seconds[name].append(time.perf_counter() - started)
    rows = {}
    for name in systems:
        median = statistics.median(seconds[name])
        bleu = sacrebleu.corpus_bleu(outputs[name], [references]).score
        same = sum(a == b for a, b in zip(outputs[name], outputs["nmtbucket"], strict=True))
        rows[name] = {
            "sentences_per_second": len(sources) / median,
            "seconds": seconds[name],
            "bleu": bleu,
            "same_as_nmtbucket": same / len(sources),
        }
    base = rows["nmtbucket"]["sentences_per_second"]
    print(f"{len(sources)} sentences, beam {args.beam}, {args.threads} threads", end=", ")
    print(f"median of {args.rounds} rounds")
    print("| system | sentences/s | vs nmtbucket | BLEU | outputs equal to nmtbucket's |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        speed = row["sentences_per_second"]
        print(
            f"| {name} | {speed:.1f} | {speed / base:.2f}x | {row['bleu']:.2f} | "
            f"{100 * row['same_as_nmtbucket']:.1f} % |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "command": " ".join(["python", *sys.argv]),
            "date": datetime.date.today().isoformat(),
            "machine": platform.platform(),
            "torch": torch.__version__,
            "ctranslate2": ctranslate2.__version__,
            "beam": args.beam,
            "threads": args.threads,
            "results": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _ctranslate2(ctranslate2: object, model: Path, beam: int, threads: int):  # type: ignore[no-untyped-def]
    translator = ctranslate2.Translator(  # type: ignore[attr-defined]
        str(model), device="cpu", inter_threads=1, intra_threads=threads
    )
    source = spm.SentencePieceProcessor(model_file=str(model / "src.spm.model"))
    target = spm.SentencePieceProcessor(model_file=str(model / "tgt.spm.model"))

    def translate(lines: list[str]) -> list[str]:
        results = translator.translate_batch(
            [source.encode(line, out_type=str) for line in lines],
            beam_size=beam,
            max_batch_size=64,
            min_decoding_length=0,
        )
        return [target.decode(result.hypotheses[0]) for result in results]

    return translate


if __name__ == "__main__":
    sys.exit(main())
