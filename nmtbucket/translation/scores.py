"""Translation quality through sacrebleu: corpus BLEU and chrF, with the signatures to report
beside them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF

from nmtbucket.errors import NmtBucketError


@dataclass(frozen=True)
class TranslationScores:
    """Corpus-level scores on a 0..100 scale, and sacrebleu's description of how they were
    computed (log or publish the signature with the score, so others can compare)."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str


def translation_scores(hypotheses: Sequence[str], references: Sequence[str]) -> TranslationScores:
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
    return TranslationScores(
        bleu=float(bleu.corpus_score(hyps, refs).score),
        chrf=float(chrf.corpus_score(hyps, refs).score),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
    )
