"""Small synthetic contexts and a needle task, for tests and for trying a policy quickly.

:class:`NeedleTask`: each episode is a context of random chunk embeddings in which one chunk
holds the answer; the query is that chunk's embedding plus noise. The reward is 1 when the
answer chunk is expanded and 0 otherwise, the shape a real reward (negative log-perplexity
of the answer) takes when one chunk carries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refrag_agent.budget import Budget
from refrag_agent.timeline import SegmentKind

from .base import ChunkFeatures, Episode, PolicyInput

_KINDS = tuple(SegmentKind)


def random_input(
    n_chunks: int,
    embed_dim: int,
    *,
    seed: int = 0,
    lengths: Sequence[int] | None = None,
    domains: Sequence[str] | None = None,
    pinned: Sequence[bool] | None = None,
    chunk_tokens: int = 16,
) -> PolicyInput:
    """A context of ``n_chunks`` random chunks; kinds cycle through every segment kind."""
    g = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(n_chunks, embed_dim, generator=g)  # (n, d)
    query = torch.randn(embed_dim, generator=g)  # (d,)
    chunks = tuple(
        ChunkFeatures(
            kind=_KINDS[i % len(_KINDS)],
            domain=domains[i] if domains is not None else _KINDS[i % len(_KINDS)].value,
            n_tokens=lengths[i] if lengths is not None else chunk_tokens,
            position=i,
            age=float(n_chunks - 1 - i),
            pinned=pinned[i] if pinned is not None else False,
            segment_id=f"seg-{i}",
        )
        for i in range(n_chunks)
    )
    return PolicyInput(embeddings=embeddings, query=query, chunks=chunks)


@dataclass(frozen=True)
class NeedleTask:
    """One chunk out of ``n_chunks`` holds the answer; the budget expands ``expand`` chunks."""

    n_chunks: int = 12
    embed_dim: int = 16
    expand: int = 1
    noise: float = 0.3
    chunk_tokens: int = 16
    seed: int = 0

    def episode(self, index: int) -> tuple[Episode, int]:
        """Episode number ``index`` and the index of its answer chunk."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        embeddings = torch.randn(self.n_chunks, self.embed_dim, generator=g)  # (n, d)
        needle = int(torch.randint(self.n_chunks, (1,), generator=g))
        query = embeddings[needle] + self.noise * torch.randn(self.embed_dim, generator=g)
        chunks = tuple(
            ChunkFeatures(
                kind=SegmentKind.DOCUMENT,
                domain="document",
                n_tokens=self.chunk_tokens,
                position=i,
                age=float(self.n_chunks - 1 - i),
            )
            for i in range(self.n_chunks)
        )
        inputs = PolicyInput(embeddings=embeddings, query=query, chunks=chunks)
        budget = Budget(tokens=self.expand * self.chunk_tokens)
        return Episode(inputs=inputs, budget=budget), self.answer(inputs)

    def __call__(self, index: int) -> Episode:
        """The episode source of :func:`refrag_agent.training.grpo.train_grpo`."""
        return self.episode(index)[0]

    @staticmethod
    def answer(inputs: PolicyInput) -> int:
        """The answer chunk: the one the query was drawn around, i.e. the nearest to it."""
        sims = torch.nn.functional.cosine_similarity(inputs.embeddings, inputs.query[None], dim=-1)
        return int(sims.argmax())

    def reward(self, inputs: PolicyInput, expanded: Sequence[int]) -> float:
        """1.0 when the answer chunk is expanded, else 0.0."""
        return 1.0 if self.answer(inputs) in expanded else 0.0
