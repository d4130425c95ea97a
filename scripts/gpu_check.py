#!/usr/bin/env python
"""The GPU check: every GPU measurement nmtbucket makes, in one command (about 8 minutes on one
H100/H200), writing a log and a JSON summary. Run it through ``scripts/gpu_check.sh``, which
installs what the GPU image lacks first; the README says how.

Stages, in order of importance, each with its own time limit and all within ``--budget``
seconds (a stage that fails or runs out is recorded and the next runs; one that no longer fits
is skipped):

  environment      device, driver, torch, CUDA and cuDNN versions
  bench_executors  scripts/bench_train.py on multi30k_transformer, all its 32 bucket keys:
                   eager, cuda_graph, cuda_graph_sync (the loss and update outcome read after
                   every step) and pad_to_max on the same batches, with the memory study (all
                   keys captured in one pool against the largest key alone and a pool per key)
  pytest_gpu       pytest -m gpu tests/gpu (graph updates against eager, memory, training, no
                   host synchronisation inside the loop)
  parity_*         the Transformer, the LSTM (Multi30k) and the stream LM (PTB) trained for
                   ``--updates`` updates eagerly and under cuda_graph (float32, no dropout, SGD
                   at a constant rate: Adam would magnify rounding noise into differences of
                   up to its learning rate, see tests/gpu/test_cuda_graph.py), their parameters
                   compared by scripts/compare_weights.py
  bench_compile    executors and compile on 2 keys (compiling 32 keys takes far longer than
                   the check may), last: whatever time is left

``--dry-run`` runs the same stages on the CPU at tiny sizes, without the GPU parts (the GPU
tests are only collected, compile is skipped, both runs of a parity stage are eager), so CI
keeps the script working. Writes to OUT: ``log.txt`` (every command and its output),
``summary.json``, ``summary.md`` and the two benchmarks' JSON (six files: a device tool may
bring back only a few); runs and caches go to ``--scratch`` (a temporary folder by default).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TRAIN = [PYTHON, "-m", "nmtbucket.cli.train"]
PARITY_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}
MIN_STAGE_SECONDS = 30  # a stage is not started with less of the budget left
TARGETS = {  # what the check is for (issue 18): name -> (where in the summary, bound, kind)
    "cuda_graph_over_eager": (("bench_executors", "ratios", "cuda_graph_over_eager"), 2.0, ">="),
    "cuda_graph_over_pad_to_max": (
        ("bench_executors", "ratios", "cuda_graph_over_pad_to_max"), 3.0, ">="),
    "shared_pool_over_largest_key_allocated": (
        ("bench_executors", "graph_memory", "shared_over_largest_allocated"), 1.1, "<="),
    "shared_pool_over_largest_key_reserved": (
        ("bench_executors", "graph_memory", "shared_over_largest_reserved"), 1.1, "<="),
}  # fmt: skip


@dataclass
class Stage:
    """Commands run one after another until one fails; ``result`` then reads what they wrote
    (given their output; files left by an earlier check are in ``clear``, removed first)."""

    name: str
    commands: list[list[str]]
    timeout: float  # seconds for all of them
    skipped: str = ""  # why the stage does not run (dry run), else empty
    clear: list[Path] = field(default_factory=list)
    result: Callable[[str], Any] = field(default=lambda output: None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the log and the summary")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, no GPU parts")
    parser.add_argument("--data", type=Path, help="data.root (default: $NMTBUCKET_DATA_ROOT)")
    parser.add_argument("--scratch", type=Path, help="runs and caches (default: a temp folder)")
    parser.add_argument("--updates", type=int, help="updates of each parity run")
    parser.add_argument(
        "--budget", type=float, default=540, help="seconds for all stages (default 540)"
    )
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU, or pass --dry-run")
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "log.txt"
    log_path.write_text("", encoding="utf-8")
    with tempfile.TemporaryDirectory() as temporary:
        scratch = args.scratch or Path(temporary)
        stages = _plan(args, scratch)
        summary: dict[str, Any] = {
            "check": "gpu",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "dry_run": args.dry_run,
            "environment": _environment(),
            "stages": {},
        }
        _say(log_path, json.dumps(summary["environment"], indent=2))
        deadline = time.monotonic() + args.budget
        for stage in stages:
            left = deadline - time.monotonic()
            summary["stages"][stage.name] = _run(stage, log_path, left)
            _write(args.out, summary)  # after every stage: a check cut short keeps the rest
    summary["targets"] = _targets(summary["stages"])
    _write(args.out, summary)
    failed = [name for name, s in summary["stages"].items() if s["status"] not in ("ok", "skipped")]
    _say(log_path, (args.out / "summary.md").read_text(encoding="utf-8"))
    return 1 if failed else 0


def _plan(args: argparse.Namespace, scratch: Path) -> list[Stage]:
    """The stages, at GPU size or (``--dry-run``) tiny on the CPU."""
    dry = args.dry_run
    data = [f"data.root={args.data.absolute()}"] if args.data else []
    cache = f"data.cache_dir={scratch / 'cache'}"
    out = args.out
    bench = [PYTHON, "scripts/bench_train.py", *data, cache]
    if dry:
        sizes = ["+experiment=demo", "bucketing.max_keys=4", "trainer.device=cpu"]
        variants = ["eager", "eager_sync", "pad_to_max"]
        rounds = ["--rounds", "2", "--steps", "3"]
    else:
        sizes = ["+experiment=multi30k_transformer"]
        variants = ["eager", "cuda_graph", "cuda_graph_sync", "pad_to_max"]
        rounds = ["--rounds", "5", "--steps", "40"]
    executors_json = out / "bench-executors.json"
    pytest = [PYTHON, "-m", "pytest", "-v", "--tb=short", "-m", "gpu", "tests/gpu", "-p",
              "no:cacheprovider", *(["--collect-only", "-q"] if dry else [])]  # fmt: skip
    stages = [
        Stage(
            "bench_executors",
            [[*bench, *sizes, "--variants", *variants, *rounds, "--json", str(executors_json)]],
            timeout=180 if dry else 200,
            clear=[executors_json],
            result=lambda output: _bench_summary(executors_json),
        ),
        Stage("pytest_gpu", [pytest], timeout=120 if dry else 180, result=_pytest_counts),
    ]
    updates = args.updates or (3 if dry else 20)
    for name, model in _parity_models(dry).items():
        run_data = data
        if dry and name == "lm_stream":  # PTB's 160,000 held-out words take a minute to score
            run_data = [f"data.root={_tiny_text(scratch / 'data')}", "data.dir=tiny"]
        stages.append(_parity_stage(name, model, updates, run_data, cache, scratch, dry))
    compile_json = out / "bench-compile.json"
    stages.append(Stage(
        "bench_compile",
        [[*bench, "+experiment=multi30k_transformer", "bucketing.max_keys=2", "--variants",
          "eager", "compile", "cuda_graph", "--rounds", "3", "--steps", "20", "--json",
          str(compile_json)]],
        timeout=300,
        clear=[compile_json],
        skipped="compiling takes minutes on a CPU" if dry else "",
        result=lambda output: _bench_summary(compile_json),
    ))  # fmt: skip
    return stages


def _tiny_text(root: Path) -> Path:
    """A small word-level corpus in PTB's layout (``tiny/{train,valid,test}.txt``), for the
    dry run's language model; returns ``root``."""
    words = [f"w{i}" for i in range(50)]
    folder = root / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in (("train", 400), ("valid", 20), ("test", 20)):
        text = "".join(
            " ".join(words[(7 * line + 3 * k) % len(words)] for k in range(3 + line % 9)) + "\n"
            for line in range(lines)
        )
        (folder / f"{split}.txt").write_text(text, encoding="utf-8")
    return root


def _parity_models(dry: bool) -> dict[str, list[str]]:
    """Overrides of each model whose parameters are compared (no dropout anywhere)."""
    if dry:
        tiny = ["+experiment=demo", "bucketing.max_keys=4", "trainer.max_minutes=0",
                "data.synthetic.num_train=2000", "data.synthetic.num_valid=20",
                "data.synthetic.num_test=20"]  # fmt: skip
        return {
            "transformer": [*tiny, "model.attention_dropout=0"],
            "lstm": [*tiny, "model=lstm", "model.d_model=32"],
            "lm_stream": ["+experiment=ptb_small", "trainer.device=cpu", "model.d_model=16"],
        }
    sgd = ["trainer.optimizer=sgd", "trainer.lr=0.5", "trainer.schedule=constant",
           "trainer.warmup_updates=0", "trainer.clip_norm=1.0"]  # fmt: skip
    return {
        "transformer": ["+experiment=multi30k_transformer", "model.attention_dropout=0", *sgd],
        "lstm": ["+experiment=multi30k_lstm", *sgd],
        "lm_stream": ["+experiment=ptb_small", "data.lm.eval_batch_size=20"],
    }


def _parity_stage(
    name: str,
    model: list[str],
    updates: int,
    data: list[str],
    cache: str,
    scratch: Path,
    dry: bool,
) -> Stage:
    """Two runs of ``model``, eager and cuda_graph (both eager in a dry run), and the
    comparison of their parameters."""
    common = [
        *model, *data, cache, f"trainer.max_updates={updates}", "trainer.max_epochs=0",
        "trainer.validate_every=0", "trainer.validate_each_epoch=false", "trainer.save_every=0",
        "trainer.progress=false", "trainer.tensorboard=false", "trainer.plot_buckets=false",
        "trainer.bf16=false", "model.dropout=0", "search.max_output_len=8", "resume=false",
    ]  # fmt: skip
    folder = scratch / "parity" / name
    runs = {executor: folder / executor for executor in ("eager", "graph")}
    graph_executor = "eager" if dry else "cuda_graph"
    comparison = folder / "comparison.json"
    commands = [
        [*TRAIN, *common, "trainer.executor=eager", f"run_dir={runs['eager']}"],
        [*TRAIN, *common, f"trainer.executor={graph_executor}", f"run_dir={runs['graph']}"],
        [PYTHON, "scripts/compare_weights.py", str(runs["graph"]), str(runs["eager"]),
         "--rtol", str(PARITY_TOLERANCE["rtol"]), "--atol", str(PARITY_TOLERANCE["atol"]),
         "--json", str(comparison), "--exit-zero"],
    ]  # fmt: skip

    def result(output: str) -> dict[str, Any]:
        report = json.loads(comparison.read_text(encoding="utf-8"))
        report["updates"] = updates
        report["executors"] = ["eager", graph_executor]
        for executor, run in runs.items():
            results = json.loads((run / "results.json").read_text(encoding="utf-8"))
            report[f"{executor}_results"] = {
                k: v for k, v in results.items() if k.startswith(("test_", "valid_", "updates"))
            }
        return report

    return Stage(
        f"parity_{name}", commands, timeout=150 if dry else 100, clear=[folder], result=result
    )


def _run(stage: Stage, log_path: Path, seconds_left: float) -> dict[str, Any]:
    """Run a stage's commands, their output appended to the log, within its own time limit
    and the ``seconds_left`` of the check; its status and result."""
    record: dict[str, Any] = {"commands": [" ".join(c) for c in stage.commands]}
    skipped = stage.skipped or ("" if seconds_left >= MIN_STAGE_SECONDS else "out of --budget")
    if skipped:
        _say(log_path, f"== {stage.name}: skipped ({skipped})")
        return {**record, "status": "skipped", "why": skipped}
    timeout = min(stage.timeout, seconds_left)
    for path in stage.clear:
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
    output_starts = log_path.stat().st_size
    started = time.monotonic()
    status = "ok"
    for command in stage.commands:
        left = timeout - (time.monotonic() - started)
        _say(log_path, f"== {stage.name}: {' '.join(command)}")
        with log_path.open("a", encoding="utf-8") as log:
            try:
                done = subprocess.run(
                    command,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=max(left, 1),
                    env=_environment_variables(),
                )
            except subprocess.TimeoutExpired:
                status = f"timeout after {timeout:.0f} s"
                break
        if done.returncode:
            status = f"failed (exit status {done.returncode})"
            break
    record.update(status=status, seconds=round(time.monotonic() - started, 1))
    output = log_path.read_bytes()[output_starts:].decode("utf-8", errors="replace")
    try:
        record["result"] = stage.result(output)
    except (OSError, ValueError, KeyError) as err:  # nothing written: the status says why
        record["result"] = None
        record["result_error"] = str(err)
    _say(log_path, f"== {stage.name}: {status} in {record['seconds']} s")
    return record


def _environment_variables() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("HYDRA_FULL_ERROR", "1")
    return env


def _pytest_counts(output: str) -> dict[str, int]:
    """pytest's closing counts (``3 passed, 1 failed, 2 skipped``), from its last such line."""
    for line in reversed(output.splitlines()):
        counts = dict(
            (word, int(number))
            for number, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|tests?)", line)
        )
        if counts:
            return counts
    return {}


def _bench_summary(path: Path) -> dict[str, Any]:
    """The benchmark's speeds, ratios and graph memory."""
    report = json.loads(path.read_text(encoding="utf-8"))
    return {
        "tgt_tokens_per_second": {
            name: round(row["tgt_tokens_per_second"]) for name, row in report["results"].items()
        },
        "capture_or_compile_seconds": {
            name: round(row["capture_or_compile_seconds"], 1)
            for name, row in report["results"].items()
        },
        "ratios": {name: round(value, 3) for name, value in report["ratios"].items()},
        "graph_memory": report["graph_memory"],
        "bucket_keys": report["bucket_keys"],
    }


def _environment() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    environment: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "commit": os.environ.get("NMTBUCKET_COMMIT") or _git("rev-parse", "HEAD"),
    }
    if cuda:
        properties = torch.cuda.get_device_properties(0)
        environment["device_memory_gib"] = round(properties.total_memory / 2**30, 1)
        environment["compute_capability"] = f"{properties.major}.{properties.minor}"
        environment["driver"] = _nvidia_smi("driver_version")
    return environment


def _git(*args: str) -> str | None:
    if shutil.which("git") is None:
        return None
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _nvidia_smi(query: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else None


def _targets(stages: dict[str, Any]) -> dict[str, Any]:
    """Each target with the value measured and whether it is met (None: not measured)."""
    targets: dict[str, Any] = {}
    for name, (where, bound, kind) in TARGETS.items():
        stage, *keys = where
        value = (stages.get(stage) or {}).get("result")
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        met = None if value is None else (value >= bound if kind == ">=" else value <= bound)
        targets[name] = {"value": value, "bound": f"{kind} {bound}", "met": met}
    for name, stage in stages.items():
        if name.startswith("parity_"):
            result = stage.get("result") or {}
            targets[f"{name}_agree"] = {
                "value": result.get("max_abs_diff"),
                "bound": f"every element within rtol {PARITY_TOLERANCE['rtol']}, atol "
                f"{PARITY_TOLERANCE['atol']}",
                "met": result.get("agree"),
            }
    return targets


def _write(out: Path, summary: dict[str, Any]) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "summary.md").write_text(_markdown(summary), encoding="utf-8")


def _markdown(summary: dict[str, Any]) -> str:
    env = summary["environment"]
    lines = [
        f"# GPU check{' (dry run)' if summary['dry_run'] else ''}: {env['device']}",
        "",
        f"{summary['date']}; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
        f"driver {env.get('driver')}, commit {env['commit']}",
        f"Command: `{summary['command']}`",
        "",
        "| stage | status | seconds |",
        "|---|---|---:|",
    ]
    for name, stage in summary["stages"].items():
        lines.append(f"| {name} | {stage['status']} | {stage.get('seconds', '')} |")
    for key in ("bench_executors", "bench_compile"):
        result = (summary["stages"].get(key) or {}).get("result")
        if result:
            lines += ["", f"{key} ({result['bucket_keys']} keys): real target tokens/s", ""]
            lines += [f"- {n}: {v}" for n, v in result["tgt_tokens_per_second"].items()]
            lines += [f"- {n}: {v}x" for n, v in result["ratios"].items()]
    if "targets" in summary:
        lines += ["", "| target | measured | bound | met |", "|---|---:|---|---|"]
        for name, target in summary["targets"].items():
            lines.append(f"| {name} | {target['value']} | {target['bound']} | {target['met']} |")
    return "\n".join(lines) + "\n"


def _say(log_path: Path, text: str) -> None:
    print(text, flush=True)
    with log_path.open("a", encoding="utf-8") as log:
        log.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
