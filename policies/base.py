"""What every expansion policy takes and returns, and the protocol they share.

A policy sees one decoder call's context as chunks: their encoder embeddings (before the
projector), the query's embedding in the same space, and per-chunk features. Given a
:class:`~refrag_agent.budget.Budget` it returns a :class:`Selection`: the chunks to expand
back into tokens and a score for every chunk (higher = more worth expanding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from refrag_agent.budget import Budget
from refrag_agent.errors import InvalidInput
from refrag_agent.timeline import SegmentKind


@dataclass(frozen=True, slots=True)
class ChunkFeatures:
    """What a policy knows about one chunk besides its embedding.

    ``age`` is how old the chunk's segment is (any unit, ``0`` = newest; the agent uses
    turns since it was written); ``position`` is the chunk's place in the laid-out context;
    ``pinned`` chunks always go in as tokens (so do chunks of segments the budget pins).
    """

    kind: SegmentKind
    domain: str
    n_tokens: int
    position: int
    age: float = 0.0
    pinned: bool = False
    segment_id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SegmentKind):
            raise InvalidInput("kind must be a SegmentKind", kind=self.kind)
        if not isinstance(self.domain, str) or not self.domain:
            raise InvalidInput("domain must be a non-empty string", domain=self.domain)
        if isinstance(self.n_tokens, bool) or not isinstance(self.n_tokens, int):
            raise InvalidInput("n_tokens must be an integer", n_tokens=self.n_tokens)
        if self.n_tokens < 1:
            raise InvalidInput("a chunk holds at least one token", n_tokens=self.n_tokens)
        if isinstance(self.position, bool) or not isinstance(self.position, int):
            raise InvalidInput("position must be an integer", position=self.position)
        if self.position < 0:
            raise InvalidInput("position must not be negative", position=self.position)
        if not math.isfinite(self.age) or self.age < 0:
            raise InvalidInput("age must be a finite number >= 0", age=self.age)


@dataclass(frozen=True)
class PolicyInput:
    """One decoder call's chunks as a policy sees them."""

    embeddings: torch.Tensor  # (n, d) chunk encoder embeddings
    query: torch.Tensor  # (d,) query embedding in the same space
    chunks: tuple[ChunkFeatures, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.chunks, tuple):
            object.__setattr__(self, "chunks", tuple(self.chunks))
        emb, query = self.embeddings, self.query
        if not isinstance(emb, torch.Tensor) or emb.dim() != 2:
            raise InvalidInput("embeddings must be a (n_chunks, dim) tensor", shape=_shape(emb))
        if not isinstance(query, torch.Tensor) or query.shape != (emb.shape[1],):
            raise InvalidInput(
                "query must be a (dim,) tensor matching the embeddings",
                expected=(emb.shape[1],),
                actual=_shape(query),
            )
        if not emb.is_floating_point() or not query.is_floating_point():
            raise InvalidInput("embeddings and query must be floating point", dtype=str(emb.dtype))
        if emb.shape[0] != len(self.chunks):
            raise InvalidInput(
                "one ChunkFeatures per embedding row",
                n_embeddings=emb.shape[0],
                n_features=len(self.chunks),
            )

    @property
    def n_chunks(self) -> int:
        return len(self.chunks)

    @property
    def n_tokens(self) -> int:
        return sum(chunk.n_tokens for chunk in self.chunks)


def _shape(value: object) -> object:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


@dataclass(frozen=True)
class Selection:
    """Which chunks to expand, and every chunk's score.

    ``indices`` lists pinned chunks first (in index order), then the policy's choices in
    the order it made them; ``n_pinned`` says where the choices start.
    """

    policy: str
    indices: tuple[int, ...]
    scores: torch.Tensor  # (n,) higher = more worth expanding
    n_pinned: int = 0

    @property
    def chosen(self) -> tuple[int, ...]:
        """The chunks the policy chose (the pinned ones left out)."""
        return self.indices[self.n_pinned :]

    def expanded_mask(self) -> torch.Tensor:
        """``(n,)`` bool: True for every chunk that goes in as tokens."""
        mask = torch.zeros(self.scores.shape[0], dtype=torch.bool)
        mask[list(self.indices)] = True
        return mask

    def expanded_tokens(self, inputs: PolicyInput) -> int:
        return sum(inputs.chunks[i].n_tokens for i in self.indices)


@dataclass(frozen=True)
class Episode:
    """One context to choose expansions for, and its budget: what a policy is trained on."""

    inputs: PolicyInput
    budget: Budget


@runtime_checkable
class ExpansionPolicy(Protocol):
    """Chooses which chunks of one decoder call are expanded back into tokens.

    Implementations must honour every cap of the budget by masking while they choose
    (:mod:`refrag_agent.policies.masking`), and expand every pinned chunk.
    """

    @property
    def name(self) -> str: ...

    def select(self, inputs: PolicyInput, budget: Budget, /) -> Selection: ...


def check_scores(scores: torch.Tensor, n_chunks: int, *, source: str) -> torch.Tensor:
    """Validate a per-chunk score vector that came from outside (a callable, a model)."""
    if not isinstance(scores, torch.Tensor) or scores.shape != (n_chunks,):
        raise InvalidInput(
            f"{source} must return one score per chunk",
            expected=(n_chunks,),
            actual=_shape(scores),
        )
    scores = scores.detach().to(torch.float32).cpu()
    if not bool(torch.isfinite(scores).all()):
        raise InvalidInput(f"{source} returned a non-finite score", source=source)
    return scores
