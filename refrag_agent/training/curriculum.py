"""Curriculum over the number of chunks per example, from 1 chunk to many.

REFRAG finds that without a curriculum even reconstruction fails to lower perplexity: a
decoder cannot learn to read 256 embeddings before it can read one. The paper's schedule
has 9 stages whose mix of chunk counts moves from mostly 1-chunk examples to mostly
64/128/256-chunk ones, with more samples in later stages. :func:`geometric_curriculum`
builds the same shape at any scale: chunk counts 1, 2, 4 ... ``max_chunks``, each stage
centred one notch further up the ladder, its neighbours getting geometrically less weight.

Here a curriculum counts optimizer *steps*: every step's examples share one chunk count
(no padding waste), and a stage's mix is realised over its steps, exactly (largest
remainder rounding), in an order shuffled by the curriculum's seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import cached_property

from refrag_agent.errors import InvalidInput


@dataclass(frozen=True)
class CurriculumStage:
    """``steps`` optimizer steps whose chunk counts follow ``mix`` ((count, weight), ...)."""

    mix: tuple[tuple[int, float], ...]
    steps: int

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InvalidInput("a curriculum stage needs at least one step", steps=self.steps)
        if not self.mix or any(n < 1 or w < 0 for n, w in self.mix):
            raise InvalidInput("mix needs chunk counts >= 1 and weights >= 0", mix=self.mix)
        if sum(w for _, w in self.mix) <= 0:
            raise InvalidInput("mix weights must not all be zero", mix=self.mix)

    def counts(self) -> dict[int, int]:
        """How many of this stage's steps use each chunk count (sums to ``steps``)."""
        total = sum(w for _, w in self.mix)
        exact = [(n, self.steps * w / total) for n, w in self.mix]
        out = {n: math.floor(x) for n, x in exact}
        left = self.steps - sum(out.values())
        # Largest remainder; ties go to the smaller chunk count (listed first).
        by_remainder = sorted(exact, key=lambda nx: -(nx[1] - math.floor(nx[1])))
        for n, _ in by_remainder[:left]:
            out[n] += 1
        return out


@dataclass(frozen=True)
class Curriculum:
    stages: tuple[CurriculumStage, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.stages:
            raise InvalidInput("a curriculum needs at least one stage")

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def max_chunks(self) -> int:
        return max(n for s in self.stages for n, w in s.mix if w > 0)

    @cached_property
    def schedule(self) -> tuple[int, ...]:
        """The chunk count of every step, stage after stage."""
        out: list[int] = []
        for i, stage in enumerate(self.stages):
            steps = [n for n, c in sorted(stage.counts().items()) for _ in range(c)]
            random.Random(f"curriculum:{self.seed}:{i}").shuffle(steps)
            out.extend(steps)
        return tuple(out)

    def n_chunks(self, step: int) -> int:
        """Chunk count at ``step``; past the end the last stage's schedule repeats."""
        sched = self.schedule
        if step < len(sched):
            return sched[step]
        last = self.stages[-1].steps
        return sched[len(sched) - last + (step - len(sched)) % last]

    def stage_of(self, step: int) -> int:
        for i, stage in enumerate(self.stages):
            if step < stage.steps:
                return i
            step -= stage.steps
        return len(self.stages) - 1


def geometric_curriculum(
    *,
    max_chunks: int,
    n_stages: int = 9,
    first_steps: int = 20,
    last_steps: int = 80,
    decay: float = 0.35,
    seed: int = 0,
) -> Curriculum:
    """The paper's schedule, scaled: chunk counts 1, 2, 4 ... ``max_chunks`` over ``n_stages``.

    Stage ``s`` centres on ladder position ``s * (L - 1) / (n_stages - 1)``; a count ``j``
    notches away gets weight ``decay ** j``. Steps per stage grow linearly from
    ``first_steps`` to ``last_steps`` (the paper: 2,000 to 8,000 samples).
    """
    if max_chunks < 1 or n_stages < 1 or first_steps < 1 or last_steps < 1:
        raise InvalidInput(
            "max_chunks, n_stages and steps must be positive",
            max_chunks=max_chunks,
            n_stages=n_stages,
        )
    if not 0 < decay < 1:
        raise InvalidInput("decay must be in (0, 1)", decay=decay)
    ladder = [1]
    while ladder[-1] * 2 <= max_chunks:
        ladder.append(ladder[-1] * 2)
    if ladder[-1] != max_chunks:
        ladder.append(max_chunks)
    stages = []
    for s in range(n_stages):
        frac = s / (n_stages - 1) if n_stages > 1 else 1.0
        centre = frac * (len(ladder) - 1)
        mix = tuple((n, round(decay ** abs(j - centre), 4)) for j, n in enumerate(ladder))
        steps = round(first_steps + frac * (last_steps - first_steps))
        stages.append(CurriculumStage(mix=mix, steps=steps))
    return Curriculum(tuple(stages), seed=seed)


def constant_curriculum(n_chunks: int, steps: int) -> Curriculum:
    """No curriculum: every step uses ``n_chunks`` (the paper's failing ablation)."""
    return Curriculum((CurriculumStage(mix=((n_chunks, 1.0),), steps=steps),))
