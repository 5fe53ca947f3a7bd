"""Natural agent-memory dialogues: determinism, answers in context, families kept apart."""

from __future__ import annotations

import pytest

from refrag_agent.errors import InvalidInput
from refrag_agent.training.dialogue_heldout_pools import HELDOUT
from refrag_agent.training.dialogue_pools import TRAIN
from refrag_agent.training.dialogues import (
    DIALOGUE_TASKS,
    Family,
    _generate,
    load_handwritten,
    natural_example,
    question_templates,
    statement_templates,
)
from refrag_agent.training.tasks import NOT_MENTIONED, TaskExample, score

FAMILIES: tuple[Family, ...] = ("train", "heldout")


def _context(example: TaskExample) -> str:
    return "\n".join(s.text for s in example.segments)


def _examples(family: Family, n: int = 60) -> list[TaskExample]:
    return [natural_example(seed, size=seed % 40 + 1, family=family) for seed in range(n)]


@pytest.mark.parametrize("family", FAMILIES)
def test_deterministic_per_seed(family: Family) -> None:
    assert natural_example(7, family=family) == natural_example(7, family=family)
    assert natural_example(7, family=family) != natural_example(8, family=family)


def test_families_draw_from_disjoint_seed_spaces() -> None:
    train = natural_example(3, task="memory_qa")
    heldout = natural_example(3, task="memory_qa", family="heldout")
    assert train.segments != heldout.segments


@pytest.mark.parametrize("family", FAMILIES)
def test_answer_in_context_exactly_when_answerable(family: Family) -> None:
    examples = _examples(family)
    assert {e.task for e in examples} == set(DIALOGUE_TASKS)
    for ex in examples:
        context = _context(ex)
        if ex.task == "unanswerable":
            assert ex.answer == NOT_MENTIONED
            assert ex.references == (NOT_MENTIONED,)
            assert NOT_MENTIONED not in context.lower()
        else:
            assert ex.answer in context
            assert all(ref in context for ref in ex.references)


@pytest.mark.parametrize("family", FAMILIES)
def test_updates_keep_both_values_latest_later(family: Family) -> None:
    for seed in range(40):
        ex, old = _generate(seed, size=30, family=family, task="fact_update")
        assert old is not None and old != ex.answer
        context = _context(ex)
        assert 0 <= context.find(old) < context.find(ex.answer)
        assert score(ex, old) == 0.0


@pytest.mark.parametrize("family", FAMILIES)
def test_size_scales_the_context(family: Family) -> None:
    small = natural_example(1, size=3, family=family, task="memory_qa")
    large = natural_example(1, size=300, family=family, task="memory_qa")
    # About size / 3 chunks, and each segment is at least one chunk.
    assert len(small.segments) <= 10
    assert 50 <= len(large.segments) <= 100
    kinds = {s.kind for s in large.segments}
    assert {"user", "assistant", "document", "tool_output"} <= kinds


def test_fact_kinds_and_depths_vary() -> None:
    where: set[str] = set()
    first_turns = 0
    for seed in range(200):
        ex = natural_example(seed, size=90, task="memory_qa")
        holders = [i for i, s in enumerate(ex.segments) if ex.answer in s.text]
        where.add(ex.segments[holders[0]].kind)
        first_turns += holders[0] < 2
    assert where == {"user", "assistant", "tool_output", "document"}
    assert 20 < first_turns < 150


def test_families_share_no_template() -> None:
    assert not statement_templates("train") & statement_templates("heldout")
    assert not question_templates("train") & question_templates("heldout")
    assert len(statement_templates("train")) >= 20
    assert len(question_templates("train")) >= 20


def test_families_share_no_names_places_or_filler() -> None:
    assert not {*TRAIN.first_names, *TRAIN.surnames} & {*HELDOUT.first_names, *HELDOUT.surnames}
    assert not set(TRAIN.places) & set(HELDOUT.places)
    assert not set(TRAIN.small_talk) & set(HELDOUT.small_talk)
    assert not set(TRAIN.chatter) & set(HELDOUT.chatter)
    assert not set(TRAIN.prose) & set(HELDOUT.prose)
    held_only = {a.noun for a in HELDOUT.attributes} - {a.noun for a in TRAIN.attributes}
    assert len(held_only) >= 5


@pytest.mark.parametrize("family", FAMILIES)
def test_score_accepts_the_answer_and_rejects_another_value(family: Family) -> None:
    for seed in range(40):
        ex = natural_example(seed, family=family, task="fact_update")
        assert score(ex, ex.answer) == 1.0
        assert score(ex, f"It's {ex.answer}.") == 1.0
        assert score(ex, NOT_MENTIONED) == 0.0
        unanswerable = natural_example(seed, family=family, task="unanswerable")
        assert score(unanswerable, NOT_MENTIONED) == 1.0
        assert score(unanswerable, ex.answer) == 0.0


def test_size_must_be_positive() -> None:
    with pytest.raises(InvalidInput):
        natural_example(0, size=0)


def test_handwritten_set_loads_with_answers_in_context() -> None:
    examples = load_handwritten()
    assert len(examples) >= 30
    assert {e.task for e in examples} == set(DIALOGUE_TASKS)
    assert any(s.kind == "tool_output" for e in examples for s in e.segments)
    for ex in examples:
        assert 4 <= len(ex.segments) <= 12
        context = _context(ex)
        assert score(ex, ex.answer) == 1.0
        if ex.task == "unanswerable":
            assert ex.answer == NOT_MENTIONED
        else:
            assert ex.answer in context
            assert all(ref in context for ref in ex.references)
            assert score(ex, NOT_MENTIONED) == 0.0
