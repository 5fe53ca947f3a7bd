"""Expansion policies: which compressed chunks go back in as tokens (``refrag_agent.policies``).

The config imports without torch; everything else is loaded on first use, so
``from refrag_agent.policies import PolicyConfig`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import PolicyConfig

if TYPE_CHECKING:
    from .base import (
        ChunkFeatures,
        Episode,
        ExpansionPolicy,
        PolicyInput,
        Selection,
    )
    from .grpo import clipped_surrogate, group_advantages, kl_estimate
    from .heuristics import (
        AllPolicy,
        NonePolicy,
        OraclePolicy,
        PerplexityPolicy,
        PerplexityScorer,
        RandomPolicy,
        RecencyPolicy,
        SimilarityPolicy,
    )
    from .masking import (
        Allowance,
        allowed_mask,
        greedy_select,
        resolve,
        step_masks,
    )
    from .network import (
        LearnedPolicy,
        PolicyNetwork,
        Rollout,
        load_policy,
        save_policy,
        sequence_log_probs,
    )
    from .registry import PolicyName, make_policy

_LAZY = {
    "base": ("ChunkFeatures", "Episode", "ExpansionPolicy", "PolicyInput", "Selection"),
    "grpo": ("clipped_surrogate", "group_advantages", "kl_estimate"),
    "heuristics": (
        "AllPolicy",
        "NonePolicy",
        "OraclePolicy",
        "PerplexityPolicy",
        "PerplexityScorer",
        "RandomPolicy",
        "RecencyPolicy",
        "SimilarityPolicy",
    ),
    "masking": ("Allowance", "allowed_mask", "greedy_select", "resolve", "step_masks"),
    "network": (
        "LearnedPolicy",
        "PolicyNetwork",
        "Rollout",
        "load_policy",
        "save_policy",
        "sequence_log_probs",
    ),
    "registry": ("PolicyName", "make_policy"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "AllPolicy",
    "Allowance",
    "ChunkFeatures",
    "Episode",
    "ExpansionPolicy",
    "LearnedPolicy",
    "NonePolicy",
    "OraclePolicy",
    "PerplexityPolicy",
    "PerplexityScorer",
    "PolicyConfig",
    "PolicyInput",
    "PolicyName",
    "PolicyNetwork",
    "RandomPolicy",
    "RecencyPolicy",
    "Rollout",
    "Selection",
    "SimilarityPolicy",
    "allowed_mask",
    "clipped_surrogate",
    "greedy_select",
    "group_advantages",
    "kl_estimate",
    "load_policy",
    "make_policy",
    "resolve",
    "save_policy",
    "sequence_log_probs",
    "step_masks",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
