"""Normalisation, F1 and exact match of bench longmem, against hand-computed values."""

from __future__ import annotations

import pytest

from refrag_agent.bench.longmem_data import Question
from refrag_agent.bench.longmem_score import (
    locomo_exact,
    locomo_f1,
    locomo_multi_f1,
    normalize_locomo,
    normalize_squad,
    score_answer,
)
from refrag_agent.bench.porter import stem


def _locomo(answer: str, category: int) -> Question:
    return Question("q", "?", answer, str(category), category == 5, locomo_category=category)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("caresses", "caress"),
        ("ponies", "poni"),
        ("ties", "tie"),
        ("running", "run"),
        ("hopping", "hop"),
        ("filing", "file"),
        ("happy", "happi"),
        ("relational", "relat"),
        ("generously", "gener"),
        ("adoption", "adopt"),
        ("dying", "die"),
        ("is", "is"),
    ],
)
def test_porter_stems(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_normalisers() -> None:
    # LoCoMo drops commas first (so "1,000" is one number), and "and" with the articles.
    assert normalize_locomo("The cat, AND a Dog!") == "cat dog"
    assert normalize_locomo("1,000 km") == "1000 km"
    assert normalize_squad("The cat and a Dog!") == "cat and dog"


def test_locomo_f1_by_hand() -> None:
    # [she, went, to, pari, franc] vs [pari]: precision 1/5, recall 1, F1 1/3.
    assert locomo_f1("She went to Paris, France", "Paris") == pytest.approx(1 / 3)
    # Stemming makes "painting" and "paint" agree.
    assert locomo_f1("painting", "paint") == 1.0
    assert locomo_f1("no overlap", "something else") == 0.0
    # Multi-hop: mean over reference parts of the best prediction part.
    assert locomo_multi_f1("Leeds, analyst", "Leeds, data analyst") == pytest.approx(
        (1.0 + 2 * (1 / 1) * (1 / 2) / (1 + 1 / 2)) / 2
    )
    assert locomo_exact("the cello", "Cello")
    assert not locomo_exact("a cello bow", "cello")


def test_score_answer_by_category() -> None:
    # Category 3: only the reference's part before the semicolon counts.
    assert score_answer(_locomo("pottery; on Thursdays", 3), "pottery").f1 == 1.0
    assert score_answer(_locomo("Leeds, data analyst", 1), "data analyst in Leeds").f1 > 0.5
    adversarial = _locomo("", 5)
    assert score_answer(adversarial, "Not mentioned in the conversation.").f1 == 1.0
    assert score_answer(adversarial, "A tabby cat.").exact == 0.0
    lme = Question("x", "?", "30", "knowledge-update", False)
    assert score_answer(lme, "30").exact == 1.0
    assert score_answer(lme, "about 30 km").f1 == pytest.approx(0.5)
    abstain = Question("x_abs", "?", "You never said.", "abstention", True)
    assert score_answer(abstain, "I don't know, you never told me.").f1 == 1.0
    assert score_answer(abstain, "Biscuit").f1 == 0.0
