"""Stages sized by wall-clock time: a stage with ``seconds`` set is scaled to fit it.

A GPU recipe cannot know its step time in advance (it depends on the card, the batch and
the chunk count), and a curriculum cannot simply be cut short: its last, longest layouts
would never be seen and the learning-rate schedule would stop mid-way. So before the
first step the loop times one step at every chunk count the stage uses, and
:func:`fit_to_seconds` scales every curriculum stage's step count by one factor so the
predicted time is the budget: the mix and the order of chunk counts are kept, and so is
the full cosine schedule. The fitted step count is recorded beside the stage's checkpoint,
so a resumed run continues the same schedule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from refrag_agent.errors import InvalidInput
from refrag_agent.training.curriculum import Curriculum
from refrag_agent.training.presets import StageConfig


def chunk_counts(config: StageConfig) -> list[int]:
    """The chunk counts a stage's steps use (one, 1, without a curriculum)."""
    if config.curriculum is None:
        return [1]
    return sorted({n for s in config.curriculum.stages for n, w in s.mix if w > 0})


def predicted_seconds(config: StageConfig, step_seconds: Mapping[int, float]) -> float:
    """Wall time of the stage's steps, from the time of one step at each chunk count."""
    if config.curriculum is None:
        return config.steps * step_seconds[1]
    return sum(
        count * step_seconds[n]
        for stage in config.curriculum.stages
        for n, count in stage.counts().items()
    )


def fit_to_seconds(config: StageConfig, step_seconds: Mapping[int, float]) -> StageConfig:
    """``config`` with its steps scaled so they are predicted to take ``config.seconds``.

    Every curriculum stage keeps at least one step; the result has ``seconds`` cleared
    (it is fitted).
    """
    if config.seconds is None:
        raise InvalidInput("the stage has no time budget", stage=config.name)
    missing = [n for n in chunk_counts(config) if n not in step_seconds]
    if missing or any(t <= 0 for t in step_seconds.values()):
        raise InvalidInput(
            "step times must be positive and cover every chunk count",
            stage=config.name,
            missing=missing,
        )
    factor = config.seconds / predicted_seconds(config, step_seconds)
    if config.curriculum is None:
        return replace(config, steps=max(1, round(config.steps * factor)), seconds=None)
    stages = tuple(
        replace(s, steps=max(1, round(s.steps * factor))) for s in config.curriculum.stages
    )
    curriculum = Curriculum(stages, seed=config.curriculum.seed)
    return replace(config, curriculum=curriculum, seconds=None)
