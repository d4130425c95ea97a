"""From a :class:`DataConfig` to token-id datasets: find (or generate) the corpus, train or load
sentencepiece, encode every split with EOS appended, filter training pairs, and cache the result.

The cache key covers the corpus bytes, the tokenizer model bytes and the filter settings, so a
rerun with the same inputs loads the arrays instead of encoding again.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from nmtbucket.config import CHOICES, DataConfig, TokenizerConfig
from nmtbucket.console import progress_bar
from nmtbucket.constants import EOS_ID
from nmtbucket.data.corpus import CorpusError
from nmtbucket.data.dataset import SequenceDataset, TokenSequences
from nmtbucket.data.parallel import FilterStats, filter_training_pairs, read_parallel
from nmtbucket.data.synthetic import write_synthetic_task
from nmtbucket.data.tokenizer import SentencePieceTokenizer, train_sentencepiece
from nmtbucket.errors import NmtBucketError
from nmtbucket.files import atomic_write_bytes, file_sha256

ROLES = ("train", "valid", "test")
TASKS = CHOICES["data.task"]
_CACHE_VERSION = 1  # bump when the layout of the cached arrays changes
_ENCODE_CHUNK = 10_000  # lines per call to the tokenizer, between progress updates


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class EvalSplit:
    """A held-out split: every line of the files, encoded, plus the raw text for sacrebleu."""

    name: str  # the split's file name, e.g. "val" or "test2016"
    dataset: SequenceDataset
    src_lines: list[str]
    ref_lines: list[str]  # raw target text, the references for BLEU/chrF


@dataclass(frozen=True)
class PreparedData:
    """Everything a training run reads from the corpus."""

    src_tokenizer: SentencePieceTokenizer
    tgt_tokenizer: SentencePieceTokenizer  # the same object as src_tokenizer when joint
    train: SequenceDataset
    valid: EvalSplit
    test: EvalSplit
    filter_stats: FilterStats
    identity: dict[str, dict[str, str]]  # what a resumed run must find unchanged: the training
    # files and the tokenizer models, by what they are, with their path and sha256

    def describe(self) -> str:
        """Sizes of the splits and vocabularies, one line for the log."""
        lengths = self.train.lengths  # (N, 2)
        if self.src_tokenizer is self.tgt_tokenizer:
            vocab = f"joint vocabulary of {self.src_tokenizer.vocab_size}"
        else:
            vocab = (
                f"vocabularies of {self.src_tokenizer.vocab_size} (source) and "
                f"{self.tgt_tokenizer.vocab_size} (target)"
            )
        return (
            f"train {len(self.train)} pairs ({int(lengths[:, 0].sum())} source and "
            f"{int(lengths[:, 1].sum())} target tokens), {self.valid.name} "
            f"{len(self.valid.dataset)}, {self.test.name} {len(self.test.dataset)}; {vocab}"
        )


@dataclass(frozen=True)
class CorpusFiles:
    """Where the three splits are: ``{folder}/{split}.{lang}``."""

    folder: Path
    src_lang: str
    tgt_lang: str
    splits: dict[str, str]  # role (train/valid/test) -> the split's file name

    def paths(self, role: str) -> tuple[Path, Path]:
        split = self.splits[role]
        return (
            self.folder / f"{split}.{self.src_lang}",
            self.folder / f"{split}.{self.tgt_lang}",
        )


def resolve_corpus(config: DataConfig, progress: bool = True) -> CorpusFiles:
    """The corpus folder of ``config``: under ``root`` for ``parallel``, or the numbers task
    generated into ``cache_dir`` for ``synthetic``."""
    if config.task == "synthetic":
        out_dir = Path(config.cache_dir) / "synthetic"
        folder = write_synthetic_task(out_dir, config.synthetic, progress=progress)
        return CorpusFiles(folder, "src", "tgt", {role: role for role in ROLES})
    if config.task != "parallel":
        raise NmtBucketError(f"data.task must be one of {TASKS}, got {config.task!r}")
    splits = {"train": config.train, "valid": config.valid, "test": config.test}
    return CorpusFiles(corpus_folder(config), config.src_lang, config.tgt_lang, splits)


def corpus_folder(config: DataConfig) -> Path:
    """``{root}/{dir}``, checked to exist, with errors that say which setting to fix."""
    if not config.root:
        raise NmtBucketError(
            "no data root: set NMTBUCKET_DATA_ROOT or pass data.root=... (the folder that holds "
            f"{config.dir or 'the corpus folder'}), or use data=demo for the built-in numbers task"
        )
    root = Path(config.root)
    if not root.is_dir():
        raise NmtBucketError(
            f"the data root {root} does not exist; fix NMTBUCKET_DATA_ROOT or data.root"
        )
    folder = root / config.dir
    if not folder.is_dir():
        raise NmtBucketError(f"corpus folder {folder} does not exist; check data.dir={config.dir}")
    return folder


def build_tokenizers(
    config: TokenizerConfig,
    corpus: CorpusFiles,
    cache_dir: str | Path,
    log: Callable[[str], None] = _log_stderr,
) -> tuple[SentencePieceTokenizer, SentencePieceTokenizer]:
    """Source and target tokenizers: the given model files, or models trained on the training
    split (one for both sides when ``config.joint``)."""
    src_train, tgt_train = corpus.paths("train")
    spm_dir = Path(cache_dir) / "sentencepiece"

    def train(files: list[Path]) -> SentencePieceTokenizer:
        return train_sentencepiece(
            files,
            spm_dir,
            vocab_size=config.vocab_size,
            model_type=config.model_type,
            character_coverage=config.character_coverage,
            split_digits=config.split_digits,
            log=log,
        )

    if config.joint:
        if config.tgt_model is not None and config.tgt_model != config.src_model:
            raise NmtBucketError(
                "with data.tokenizer.joint=true one model serves both sides: give it as "
                "data.tokenizer.src_model and leave tgt_model unset, or set joint=false"
            )
        if config.src_model is not None:
            shared = _load_model(config.src_model, "src_model")
        else:
            shared = train([src_train, tgt_train])
        return shared, shared
    given_src = _load_model(config.src_model, "src_model") if config.src_model else None
    given_tgt = _load_model(config.tgt_model, "tgt_model") if config.tgt_model else None
    return given_src or train([src_train]), given_tgt or train([tgt_train])


def _load_model(path: str, key: str) -> SentencePieceTokenizer:
    if not Path(path).is_file():
        raise NmtBucketError(
            f"data.tokenizer.{key}={path} does not exist; give the path of a sentencepiece "
            ".model file, or leave it unset to train one on the training split"
        )
    return SentencePieceTokenizer(path)


def prepare_data(
    config: DataConfig, progress: bool = True, log: Callable[[str], None] = _log_stderr
) -> PreparedData:
    """Tokenizers and encoded datasets for ``config``; see the module docstring."""
    corpus = resolve_corpus(config, progress)
    src_tok, tgt_tok = build_tokenizers(config.tokenizer, corpus, config.cache_dir, log)
    held_out = {role: read_parallel(*corpus.paths(role)) for role in ("valid", "test")}
    for role, (src_lines, _) in held_out.items():
        if not src_lines:
            raise CorpusError(
                f"{corpus.paths(role)[0]}: the {role} split ({corpus.splits[role]}) is empty, so "
                f"nothing could be scored; give data.{role} a split with sentences"
            )
    files = [path for role in ROLES for path in corpus.paths(role)]
    digests = _digests([*files, src_tok.model_path, tgt_tok.model_path])
    key = _cache_key(config, digests)
    cache_path = Path(config.cache_dir) / "encoded" / f"{key}.pt"
    state = _load_cache(cache_path, log)
    if state is None:
        state = _encode_corpus(config, corpus, (src_tok, tgt_tok), held_out, progress)
        atomic_write_bytes(cache_path, lambda file: torch.save(state, file))
        log(f"encoded data cached in {cache_path}")
    stats = FilterStats(**state["filter_stats"])
    log(stats.summary())

    def eval_split(role: str) -> EvalSplit:
        src_lines, ref_lines = held_out[role]
        return EvalSplit(corpus.splits[role], _dataset(state[role]), src_lines, ref_lines)

    return PreparedData(
        src_tokenizer=src_tok,
        tgt_tokenizer=tgt_tok,
        train=_dataset(state["train"]),
        valid=eval_split("valid"),
        test=eval_split("test"),
        filter_stats=stats,
        identity=_identity(corpus, (src_tok, tgt_tok), digests),
    )


def _digests(paths: list[Path]) -> dict[Path, str]:
    """The SHA-256 of each file, by path (in the order given)."""
    for path in paths:
        if not path.is_file():
            raise CorpusError(f"corpus file not found: {path}")
    return {path: file_sha256(path) for path in paths}


def _cache_key(config: DataConfig, digests: dict[Path, str]) -> str:
    """A hash of everything the encoded arrays depend on: the SHA-256 of the corpus files (by
    role and side) and tokenizer models, and the filter settings."""
    settings = (_CACHE_VERSION, config.max_src_len, config.max_tgt_len, config.max_length_ratio)
    digest = hashlib.sha256(repr(settings).encode())
    for file_digest in digests.values():
        digest.update(file_digest.encode())
    return digest.hexdigest()[:20]


def _identity(
    corpus: CorpusFiles,
    tokenizers: tuple[SentencePieceTokenizer, SentencePieceTokenizer],
    digests: dict[Path, str],
) -> dict[str, dict[str, str]]:
    src_train, tgt_train = corpus.paths("train")
    files = {
        "training source file": src_train,
        "training target file": tgt_train,
        "source sentencepiece model": tokenizers[0].model_path,
        "target sentencepiece model": tokenizers[1].model_path,
    }
    return {label: {"path": str(p), "sha256": digests[p]} for label, p in files.items()}


def _load_cache(path: Path, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The cached arrays at ``path``, or None when there are none (or they cannot be read)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        log(f"cannot read the cached encoding {path} ({err}); encoding again")
        return None
    if not isinstance(state, dict) or state.get("version") != _CACHE_VERSION:
        return None
    log(f"reusing encoded data from {path}")
    return state


def _encode_corpus(
    config: DataConfig,
    corpus: CorpusFiles,
    tokenizers: tuple[SentencePieceTokenizer, SentencePieceTokenizer],
    held_out: dict[str, tuple[list[str], list[str]]],
    progress: bool,
) -> dict[str, Any]:
    """Encode every split (EOS appended), drop unusable training pairs, pack as tensors."""
    texts = {"train": read_parallel(*corpus.paths("train")), **held_out}
    total = sum(len(src) + len(tgt) for src, tgt in texts.values())
    with progress_bar(total, "encoding", enabled=progress, unit="lines") as bar:
        encoded = {
            role: (_encode(tokenizers[0], src, bar), _encode(tokenizers[1], tgt, bar))
            for role, (src, tgt) in texts.items()
        }
    train_src, train_tgt = encoded["train"]
    kept, stats = filter_training_pairs(
        torch.tensor([len(ids) for ids in train_src], dtype=torch.int64),
        torch.tensor([len(ids) for ids in train_tgt], dtype=torch.int64),
        config.max_src_len,
        config.max_tgt_len,
        config.max_length_ratio,
    )
    encoded["train"] = ([train_src[i] for i in kept], [train_tgt[i] for i in kept])
    state: dict[str, Any] = {"version": _CACHE_VERSION, "filter_stats": asdict(stats)}
    for role, (src, tgt) in encoded.items():
        src_seqs, tgt_seqs = TokenSequences.from_lists(src), TokenSequences.from_lists(tgt)
        state[role] = {
            "src_flat": src_seqs.flat,
            "src_offsets": src_seqs.offsets,
            "tgt_flat": tgt_seqs.flat,
            "tgt_offsets": tgt_seqs.offsets,
        }
    return state


def _encode(tokenizer: SentencePieceTokenizer, lines: list[str], bar: tqdm[Any]) -> list[list[int]]:
    """Token ids of every line with EOS appended (an empty line becomes just EOS)."""
    encoded: list[list[int]] = []
    for start in range(0, len(lines), _ENCODE_CHUNK):
        chunk = lines[start : start + _ENCODE_CHUNK]
        encoded.extend([*ids, EOS_ID] for ids in tokenizer.encode(chunk))
        bar.update(len(chunk))
    return encoded


def _dataset(packed: dict[str, torch.Tensor]) -> SequenceDataset:
    return SequenceDataset(
        TokenSequences(packed["src_flat"], packed["src_offsets"]),
        TokenSequences(packed["tgt_flat"], packed["tgt_offsets"]),
    )
