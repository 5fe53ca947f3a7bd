"""Heuristic expansion policies: the baselines the learned policy has to beat.

Each one turns the context into one score per chunk and spends the budget by descending
score through the budget mask (:func:`~refrag_agent.policies.masking.greedy_select`).

Cost per call, at ``n`` chunks of dimension ``d``:

- none, all, random, recency: ``O(n log n)``, no model call.
- similarity: one ``(n, d)`` by ``(d,)`` product; no model call (the query embedding comes
  from the chunk encoder, which the agent runs anyway).
- perplexity (descending and ascending, the REFRAG paper's baselines): one **decoder**
  forward pass over the full, uncompressed context to score every chunk, i.e. the very
  prefill compression is meant to avoid. They are reference points for benchmarks, not
  something to serve.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Literal

import torch
from typing_extensions import assert_never

from refrag_agent.budget import Budget

from .base import PolicyInput, Selection, check_scores
from .masking import greedy_select, make_selection, resolve

PerplexityScorer = Callable[[PolicyInput], torch.Tensor]
"""Returns ``(n,)`` per-chunk perplexities, e.g. the decoder's mean token perplexity of each
chunk given everything before it, from one forward pass over the uncompressed context."""


def _select_by(name: str, scores: torch.Tensor, inputs: PolicyInput, budget: Budget) -> Selection:
    allowance = resolve(inputs, budget)
    return make_selection(name, scores, allowance, greedy_select(scores, allowance))


class NonePolicy:
    """Expands nothing but the pinned chunks: the compression-only bound."""

    name = "none"

    def select(self, inputs: PolicyInput, budget: Budget, /) -> Selection:
        allowance = resolve(inputs, budget)
        return make_selection(self.name, torch.zeros(inputs.n_chunks), allowance, [])


class AllPolicy:
    """Expands chunks in context order while the budget lasts.

    With ``Budget(p=1.0)`` (and no domain caps) that is every chunk: the full-context bound.
    """

    name = "all"

    def select(self, inputs: PolicyInput, budget: Budget, /) -> Selection:
        scores = -torch.tensor([float(c.position) for c in inputs.chunks])
        return _select_by(self.name, scores, inputs, budget)


class RandomPolicy:
    """Expands uniformly random chunks; seeded, so a run can be replayed."""

    name = "random"

    def __init__(self, *, seed: int = 0) -> None:
        self._generator = torch.Generator().manual_seed(seed)

    def select(self, inputs: PolicyInput, budget: Budget, /) -> Selection:
        scores = torch.rand(inputs.n_chunks, generator=self._generator)
        return _select_by(self.name, scores, inputs, budget)


class RecencyPolicy:
    """Expands the newest chunks first (smallest age; later position breaks ties)."""

    name = "recency"

    def select(self, inputs: PolicyInput, budget: Budget, /) -> Selection:
        n = inputs.n_chunks
        # Rank by (age ascending, position descending); the score is the reversed rank.
        order = sorted(range(n), key=lambda i: (inputs.chunks[i].age, -inputs.chunks[i].position))
        scores = torch.empty(n)
        scores[order] = torch.arange(n, 0, -1, dtype=torch.float32)
        return _select_by(self.name, scores, inputs, budget)


class SimilarityPolicy:
    """Expands the chunks whose embeddings are most cosine-similar to the query's."""

    name = "similarity"

    def select(self, inputs: PolicyInput, budget: Budget, /) -> Selection:
        scores = query_similarity(inputs.embeddings, inputs.query)
        return _select_by(self.name, scores, inputs, budget)


class OraclePolicy:
    """Expands the chunks known to hold the answer first: an upper bound for benchmarks,
    where the generator of the task knows where its answer is (never available serving)."""

    name = "oracle"

    def __init__(self, answer_chunks: Collection[int]) -> None:
        self.answer_chunks = frozenset(answer_chunks)

    def select(self, inputs: PolicyInput, budget: Budget, /) -> Selection:
        scores = torch.zeros(inputs.n_chunks)
        scores[[i for i in self.answer_chunks if i < inputs.n_chunks]] = 1.0
        return _select_by(self.name, scores, inputs, budget)


def query_similarity(embeddings: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """``(n,)`` cosine similarity of each chunk embedding ``(n, d)`` to the query ``(d,)``."""
    emb = embeddings.detach().float()
    return torch.nn.functional.cosine_similarity(emb, query.detach().float()[None, :], dim=-1)


class PerplexityPolicy:
    """The REFRAG paper's perplexity baselines.

    ``descending`` expands the chunks the decoder finds hardest to predict (highest
    perplexity: compressing them loses the most), ``ascending`` the easiest ones.
    Cost: ``scorer`` runs one decoder forward pass over the full, uncompressed context per
    call (see the module doc).
    """

    def __init__(
        self, scorer: PerplexityScorer, *, order: Literal["descending", "ascending"]
    ) -> None:
        self._scorer = scorer
        self.order = order

    @property
    def name(self) -> str:
        return "perplexity-desc" if self.order == "descending" else "perplexity-asc"

    def select(self, inputs: PolicyInput, budget: Budget, /) -> Selection:
        perplexity = check_scores(self._scorer(inputs), inputs.n_chunks, source="scorer")
        if self.order == "descending":
            scores = perplexity
        elif self.order == "ascending":
            scores = -perplexity
        else:
            assert_never(self.order)
        return _select_by(self.name, scores, inputs, budget)
