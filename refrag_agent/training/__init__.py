"""Training pipeline: data built offline, curriculum, stages and presets on accelerate.

``refrag-agent train --preset NAME [--stage S] [--resume]`` calls :func:`run_train`; so does
``python -m refrag_agent.training`` (what ``accelerate launch -m`` runs). See
docs/training.md.
"""

from refrag_agent.training.curriculum import (
    Curriculum,
    CurriculumStage,
    constant_curriculum,
    geometric_curriculum,
)
from refrag_agent.training.grpo import EpisodeSource, GRPOConfig, RewardFn, grpo_step, train_grpo
from refrag_agent.training.loop import run_train, train
from refrag_agent.training.presets import (
    PRESETS,
    STAGES,
    DecoderSpec,
    Preset,
    StageConfig,
    StageName,
    get_preset,
    with_stage,
)

__all__ = [
    "PRESETS",
    "STAGES",
    "Curriculum",
    "CurriculumStage",
    "DecoderSpec",
    "EpisodeSource",
    "GRPOConfig",
    "Preset",
    "RewardFn",
    "StageConfig",
    "StageName",
    "constant_curriculum",
    "geometric_curriculum",
    "get_preset",
    "grpo_step",
    "run_train",
    "train",
    "train_grpo",
    "with_stage",
]
