"""Build a policy by name: what the CLI, the agent settings and the benchmarks use."""

from __future__ import annotations

from typing import Literal, get_args

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
    network: PolicyNetwork | None = None,
) -> ExpansionPolicy:
    """The policy called ``name``; perplexity ones need ``scorer``, ``learned`` a ``network``."""
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
        if network is None:
            raise InvalidInput("the learned policy needs a network (load_policy)", name=name)
        return LearnedPolicy(network)
    else:
        assert_never(name)
