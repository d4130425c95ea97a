"""Translation quality through sacrebleu (corpus BLEU and chrF, with the signatures to report
beside them), and a held-out split's scores with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

from nmtbucket.errors import NmtBucketError
from nmtbucket.training.evaluation import SplitScores


@dataclass(frozen=True)
class CorpusScores:
    """Corpus-level scores on a 0..100 scale, and sacrebleu's description of how they were
    computed (log or publish the signature with the score, so others can compare)."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> CorpusScores:
    """BLEU (13a tokenisation, exponential smoothing) and chrF of detokenised ``hypotheses``
    against one reference each."""
    if len(hypotheses) != len(references):
        raise NmtBucketError(
            f"{len(hypotheses)} hypotheses for {len(references)} references: "
            "every reference line needs exactly one translation"
        )
    if not references:
        raise NmtBucketError("no sentences to score: the reference set is empty")
    bleu, chrf = BLEU(), CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    return CorpusScores(
        bleu=float(bleu.corpus_score(hyps, refs).score),
        chrf=float(chrf.corpus_score(hyps, refs).score),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
    )


@dataclass
class TranslationSplitScores(SplitScores):
    """A translation split's scores: the loss, and BLEU and chrF of its translations with the
    signatures to report beside them (None where BLEU was not asked for)."""

    bleu: float | None = None
    chrf: float | None = None
    bleu_signature: str | None = None
    chrf_signature: str | None = None
    hypotheses: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {**super().as_dict(), "bleu": self.bleu, "chrf": self.chrf}

    def describe(self) -> str:
        text = super().describe()
        return text if self.bleu is None else f"{text}, BLEU {self.bleu:.2f}, chrF {self.chrf:.2f}"

    def results(self, role: str) -> dict[str, Any]:
        entries = super().results(role)
        if self.bleu is not None:
            entries |= {f"{role}_bleu": self.bleu, f"{role}_chrf": self.chrf}
            entries |= {"bleu_signature": self.bleu_signature}
            entries |= {"chrf_signature": self.chrf_signature}
        return entries

    def signatures(self) -> list[str]:
        if self.bleu is None:
            return []
        return [f"BLEU signature: {self.bleu_signature}", f"chrF signature: {self.chrf_signature}"]

    def summary(self) -> list[str]:
        first, *more = super().summary()
        if self.bleu is None:
            return [first, *more]
        return [f"BLEU {self.bleu:.2f}  chrF {self.chrf:.2f}  {first}", f"{self.bleu_signature}"]
