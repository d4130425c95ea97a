"""BLEU/chrF through sacrebleu, and perplexity."""

from __future__ import annotations

import math

import pytest
import sacrebleu

from nmtbucket.errors import NmtBucketError
from nmtbucket.training.evaluation import perplexity
from nmtbucket.translation.scores import translation_scores

HYPS = ["the cat sat on the mat", "a dog runs in the park", "hello world"]
REFS = ["the cat sat on a mat", "the dog runs in the park", "hello , world"]


def test_identical_text_scores_100() -> None:
    scores = translation_scores(REFS, REFS)
    assert scores.bleu == pytest.approx(100.0)
    assert scores.chrf == pytest.approx(100.0)


def test_scores_match_sacrebleu() -> None:
    scores = translation_scores(HYPS, REFS)
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert 0.0 < scores.bleu < 100.0 and 0.0 < scores.chrf < 100.0


def test_signatures_describe_the_metric() -> None:
    scores = translation_scores(HYPS, REFS)
    assert "nrefs:1" in scores.bleu_signature and "tok:13a" in scores.bleu_signature
    assert "nrefs:1" in scores.chrf_signature and "nc:6" in scores.chrf_signature


def test_mismatched_or_empty_input_is_an_error() -> None:
    with pytest.raises(NmtBucketError, match="3 hypotheses for 2 references"):
        translation_scores(HYPS, REFS[:2])
    with pytest.raises(NmtBucketError, match="reference set is empty"):
        translation_scores([], [])


def test_perplexity() -> None:
    assert perplexity(10 * math.log(2), 10) == pytest.approx(2.0)
    assert perplexity(0.0, 5) == 1.0
    assert perplexity(1e6, 1) == math.inf
    with pytest.raises(ValueError, match="at least one token"):
        perplexity(1.0, 0)
