"""Curriculum schedules: exact mixes per stage, deterministic, 1 chunk to many."""

from __future__ import annotations

from collections import Counter

import pytest

from refrag_agent.errors import InvalidInput
from refrag_agent.training.curriculum import (
    Curriculum,
    CurriculumStage,
    constant_curriculum,
    geometric_curriculum,
)


def test_schedule_follows_each_stage_mix_exactly() -> None:
    cur = Curriculum(
        (
            CurriculumStage(mix=((1, 3.0), (2, 1.0)), steps=8),
            CurriculumStage(mix=((2, 1.0), (4, 1.0), (8, 2.0)), steps=10),
        ),
        seed=3,
    )
    sched = cur.schedule
    assert len(sched) == cur.total_steps == 18
    assert Counter(sched[:8]) == {1: 6, 2: 2}
    # 2.5 / 2.5 / 5 steps: the left-over step goes to the first of the tied remainders.
    assert Counter(sched[8:]) == {2: 3, 4: 2, 8: 5}
    assert [cur.stage_of(s) for s in (0, 7, 8, 17, 40)] == [0, 0, 1, 1, 1]
    assert cur.n_chunks(18) in (2, 4, 8)  # past the end: the last stage repeats
    assert Curriculum(cur.stages, seed=3).schedule == sched
    assert Curriculum(cur.stages, seed=4).schedule != sched


def test_geometric_curriculum_moves_from_one_chunk_to_many() -> None:
    cur = geometric_curriculum(max_chunks=16, n_stages=9, first_steps=20, last_steps=60)
    assert len(cur.stages) == 9
    assert cur.max_chunks == 16
    assert cur.stages[0].steps == 20 and cur.stages[-1].steps == 60
    first = Counter(cur.schedule[: cur.stages[0].steps])
    last = Counter(cur.schedule[-cur.stages[-1].steps :])
    assert first.most_common(1)[0][0] == 1
    assert last.most_common(1)[0][0] == 16
    means = []
    offset = 0
    for stage in cur.stages:
        part = cur.schedule[offset : offset + stage.steps]
        means.append(sum(part) / len(part))
        offset += stage.steps
    assert means == sorted(means)  # the mean chunk count never goes down
    assert set(cur.schedule) == {1, 2, 4, 8, 16}


def test_constant_curriculum_and_bad_input() -> None:
    assert set(constant_curriculum(4, 10).schedule) == {4}
    with pytest.raises(InvalidInput):
        CurriculumStage(mix=((0, 1.0),), steps=3)
    with pytest.raises(InvalidInput):
        geometric_curriculum(max_chunks=0)
