"""``nmtbucket-buckets``: the bucket plan of a training config, without training. It takes the
same config and overrides as ``nmtbucket-train``, reads and tokenises the training data through
the same cache, chooses the buckets, prints a table per key with totals against random and
sorted batching, and draws ``buckets.png`` into the run folder (with matplotlib)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from nmtbucket.bucketing.picture import INSTALL, PlotUnavailable, draw_plan
from nmtbucket.bucketing.plan import curve_key_counts, plan_buckets
from nmtbucket.cli.train import to_train_config
from nmtbucket.config import TrainConfig
from nmtbucket.data.lm_corpus import LanguageModelCorpus
from nmtbucket.data.prepare import prepare_data
from nmtbucket.data.sentence_batches import sentence_lengths
from nmtbucket.errors import NmtBucketError

HELP = (
    """\
nmtbucket-buckets: see how a training config's corpus falls into buckets, without training.

usage: nmtbucket-buckets [+experiment=NAME] [KEY=VALUE ...]

Takes the same config and overrides as nmtbucket-train (for example
+experiment=multi30k_transformer bucketing.max_keys=16 bucketing.token_budget=8192). Prints, per
bucket key, its batch size and what one epoch puts through it (examples, batches, padded and
real tokens, padding %), then the totals against random and sorted batching without keys.
Writes RUN_DIR/buckets.png (the length histogram with every key, and padding against the
number of keys) when matplotlib is installed: """
    + INSTALL
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def training_lengths(config: TrainConfig) -> torch.Tensor:
    """(N, d) per-stream lengths of the training examples as training batches them: source and
    target tokens (EOS included) for translation, tokens of each sentence for a language model
    in sentence mode."""
    if config.data.task != "lm":
        return prepare_data(config.data, progress=config.trainer.progress, log=_log).train.lengths
    if config.data.lm.mode != "sentences":
        raise NmtBucketError(
            f"data.lm.mode={config.data.lm.mode} batches one token stream with a single key "
            f"(data.lm.bptt={config.data.lm.bptt}): there is no bucket plan to show; set "
            "data.lm.mode=sentences to bucket sentences by length"
        )
    corpus = LanguageModelCorpus.load(config.data, log=_log)
    return sentence_lengths(corpus.splits["train"])


@hydra.main(version_base=None, config_path="pkg://nmtbucket.conf", config_name="train")
def main(cfg: DictConfig) -> None:
    """Print the plan and draw the picture; a user error ends with its message and status 1."""
    try:
        config = to_train_config(cfg)
        lengths = training_lengths(config)
        keys = curve_key_counts(config.bucketing)
        plan = plan_buckets(lengths, config.bucketing, keys, seed=config.trainer.seed)
        print(
            f"{config.name}: {len(lengths)} training examples, bucketing.strategy="
            f"{config.bucketing.strategy}, token budget {config.bucketing.token_budget} padded "
            "tokens per batch, one epoch\n"
        )
        print(plan.table(), flush=True)
        picture = Path(config.run_dir) / "buckets.png"
        try:
            draw_plan(plan, lengths, picture, f"{config.name}: bucket plan")
            print(f"\npicture: {picture}")
        except PlotUnavailable as missing:
            print(f"\nno picture: {missing}")
    except NmtBucketError as err:
        print(f"nmtbucket-buckets: error: {err}", file=sys.stderr)
        sys.exit(1)


def entry() -> None:
    """The ``nmtbucket-buckets`` command: Hydra writes no files of its own (no ``.hydra/``, no
    log file in the run folder), and ``--help`` describes this command."""
    if {"--help", "-h"} & set(sys.argv[1:]):
        print(HELP)
        return
    sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none"]
    main()


if __name__ == "__main__":
    entry()
