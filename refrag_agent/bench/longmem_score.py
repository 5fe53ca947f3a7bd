"""Token F1 and exact match, normalised as each benchmark's own script does (no LLM judge).

**LoCoMo** (``task_eval/evaluation.py`` of ``snap-research/locomo``):

- normalise: drop commas, lower-case, drop punctuation, drop the words ``a an the and``,
  collapse white space;
- F1: token overlap of the Porter stems of both normalised strings
  (:mod:`refrag_agent.bench.porter`);
- category 1 (multi-hop): answer and prediction split on commas; the mean over answer
  parts of the best F1 against any prediction part;
- category 3: the reference is its first part before a semicolon;
- category 5 (adversarial): 1 when the prediction says ``no information available`` or
  ``not mentioned``, else 0 (exact match the same);
- exact match: the two normalised strings hold the same set of words.

**LongMemEval** publishes only an LLM judge, so we score it with the SQuAD normalisation
(lower-case, drop punctuation, drop ``a an the``, collapse white space), F1 over plain
tokens and exact match of the normalised strings; an abstention question (``_abs``) scores
1 when the prediction declines (:data:`DECLINES`). These figures are not comparable with
published LongMemEval accuracies, which are judged by GPT-4o.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

from refrag_agent.bench.longmem_data import Question
from refrag_agent.bench.porter import stem

LOCOMO_DECLINES = ("no information available", "not mentioned")
"""What LoCoMo's script accepts as declining an adversarial question."""

DECLINES = (
    *LOCOMO_DECLINES,
    "no information",
    "not enough information",
    "don't know",
    "do not know",
    "cannot answer",
    "can't answer",
    "did not mention",
    "didn't mention",
    "never mentioned",
)
"""What we accept as declining a LongMemEval abstention question (its judge reads intent)."""

_PUNCTUATION = frozenset(string.punctuation)
_LOCOMO_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class Score:
    """One answer's token F1 and exact match, each in [0, 1]."""

    f1: float
    exact: float


def _clean(text: str, articles: re.Pattern[str]) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(articles.sub(" ", text).split())


def normalize_locomo(text: str) -> str:
    """LoCoMo's ``normalize_answer``: commas, case, punctuation, ``a an the and``, spaces."""
    return _clean(text.replace(",", ""), _LOCOMO_ARTICLES)


def normalize_squad(text: str) -> str:
    """SQuAD's normalisation: case, punctuation, ``a an the``, spaces."""
    return _clean(text, _SQUAD_ARTICLES)


def token_f1(prediction: list[str], reference: list[str]) -> float:
    """Harmonic mean of token precision and recall (bag of tokens); 0 with no overlap."""
    same = sum((Counter(prediction) & Counter(reference)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction), same / len(reference)
    return 2 * precision * recall / (precision + recall)


def locomo_f1(prediction: str, reference: str) -> float:
    """LoCoMo's ``f1_score``: F1 over the Porter stems of the normalised words."""
    pred = [stem(w) for w in normalize_locomo(prediction).split()]
    ref = [stem(w) for w in normalize_locomo(reference).split()]
    return token_f1(pred, ref)


def locomo_multi_f1(prediction: str, reference: str) -> float:
    """LoCoMo's ``f1`` for lists: per reference part, the best F1 of any predicted part."""
    preds = [p.strip() for p in prediction.split(",")]
    refs = [r.strip() for r in reference.split(",")]
    return sum(max(locomo_f1(p, r) for p in preds) for r in refs) / len(refs)


def locomo_exact(prediction: str, reference: str) -> bool:
    """LoCoMo's ``exact_match_score``: the same set of normalised words."""
    return set(normalize_locomo(prediction).split()) == set(normalize_locomo(reference).split())


def declines(prediction: str, phrases: tuple[str, ...] = DECLINES) -> bool:
    lowered = prediction.lower().replace("\u2019", "'")
    return any(p in lowered for p in phrases)


def score_answer(question: Question, prediction: str) -> Score:
    """The prediction's F1 and exact match against the question's reference."""
    category = question.locomo_category
    if category is not None:  # LoCoMo
        if category == 5:
            hit = float(declines(prediction, LOCOMO_DECLINES))
            return Score(hit, hit)
        reference = question.answer
        if category == 3:
            reference = reference.split(";")[0].strip()
        f1 = (
            locomo_multi_f1(prediction, reference)
            if category == 1
            else locomo_f1(prediction, reference)
        )
        return Score(f1, float(locomo_exact(prediction, reference)))
    if question.unanswerable:  # LongMemEval abstention
        hit = float(declines(prediction))
        return Score(hit, hit)
    pred, ref = normalize_squad(prediction), normalize_squad(question.answer)
    return Score(token_f1(pred.split(), ref.split()), float(pred == ref))
