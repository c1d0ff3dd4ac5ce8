"""Corpus BLEU against values worked out by hand (and the paper's example)."""

from __future__ import annotations

import math

import pytest

from worker.pipelines.seq2seq.bleu import corpus_bleu, modified_precision


def test_modified_precision_is_clipped_as_in_the_paper():
    # Papineni et al. (2002), section 2.1: "the the the the the the the" scores 2/7.
    references = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    assert modified_precision(references, "the the the the the the the".split(), 1) == (2, 7)


def test_identical_sentences_score_one_and_disjoint_ones_zero():
    sentence = "the quick brown fox jumps".split()
    assert corpus_bleu([[sentence]], [sentence]) == 1.0
    assert corpus_bleu([[sentence]], ["a b c d e".split()]) == 0.0
    assert corpus_bleu([[sentence]], [[]]) == 0.0


def test_value_with_brevity_penalty_worked_by_hand():
    reference = "a b c d e f".split()
    hypothesis = "a b c d x".split()
    # Precisions 4/5, 3/4, 2/3, 1/2; brevity penalty exp(1 - 6/5).
    expected = math.exp(1 - 6 / 5) * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert corpus_bleu([[reference]], [hypothesis]) == pytest.approx(expected, rel=1e-12)


def test_smoothing_adds_one_above_unigrams():
    # No matching bigram: 0 unsmoothed; smoothed precisions 2/3, 1/2, 1/1, 1/1 (the 4-gram has none).
    reference, hypothesis = "x y z".split(), "y x z".split()
    assert corpus_bleu([[reference]], [hypothesis]) == 0.0
    expected = (3 / 3 * 1 / 3 * 1 / 2 * 1 / 1) ** 0.25
    assert corpus_bleu([[reference]], [hypothesis], smoothing=True) == pytest.approx(expected, rel=1e-12)


def test_references_must_match_hypotheses():
    with pytest.raises(ValueError, match="references"):
        corpus_bleu([], [["a"]])
