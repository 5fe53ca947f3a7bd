"""Build a policy by name: what the CLI, the agent settings and the benchmarks use."""

from __future__ import annotations

from typing import Literal, get_args

from torch import nn
from typing_extensions import assert_never

from refrag_agent.errors import InvalidInput

from .base import ExpansionPolicy
from .heuristics import (
    AllPolicy,
    NonePolicy,
    PerplexityPolicy,
    PerplexityScorer,
    RandomPolicy,
    RecencyPolicy,
    SimilarityPolicy,
)
from .network import LearnedPolicy, PolicyNetwork

PolicyName = Literal[
    "none",
    "all",
    "random",
    "recency",
    "similarity",
    "perplexity-desc",
    "perplexity-asc",
    "learned",
]
POLICY_NAMES: tuple[PolicyName, ...] = get_args(PolicyName)


def make_policy(
    name: PolicyName,
    *,
    seed: int = 0,
    scorer: PerplexityScorer | None = None,
    network: nn.Module | None = None,
) -> ExpansionPolicy:
    """The policy called ``name``; perplexity ones need ``scorer``, ``learned`` a ``network``.

    ``network`` may come as a checkpoint's opaque ``RefragModel.policy``: it must be a
    :class:`PolicyNetwork` (:func:`load_policy`) when ``name`` is ``learned``.
    """
    if name not in POLICY_NAMES:
        raise InvalidInput("unknown expansion policy", name=name, known=list(POLICY_NAMES))
    if name == "none":
        return NonePolicy()
    elif name == "all":
        return AllPolicy()
    elif name == "random":
        return RandomPolicy(seed=seed)
    elif name == "recency":
        return RecencyPolicy()
    elif name == "similarity":
        return SimilarityPolicy()
    elif name == "perplexity-desc" or name == "perplexity-asc":
        if scorer is None:
            raise InvalidInput(f"policy {name} needs a perplexity scorer", name=name)
        order: Literal["descending", "ascending"] = (
            "descending" if name == "perplexity-desc" else "ascending"
        )
        return PerplexityPolicy(scorer, order=order)
    elif name == "learned":
        if not isinstance(network, PolicyNetwork):
            raise InvalidInput(
                "the learned policy needs a PolicyNetwork (load_policy)",
                name=name,
                network=type(network).__name__,
            )
        return LearnedPolicy(network)
    else:
        assert_never(name)
