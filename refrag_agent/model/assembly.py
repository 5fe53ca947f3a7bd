"""Assembly: a plan of placements, in any order -> one mixed ``inputs_embeds`` sequence.

A plan lists what the decoder reads, left to right: token spans (template text, the
query), expanded chunks (a chunk's real tokens) and compressed chunks (one projected
embedding each, one position each). Compressed chunks can sit anywhere, so "compress
anywhere" is just a placement order. A batch of plans of different lengths is
left-padded, so every row's next token is predicted at the same column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from refrag_agent.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class TokenSpan:
    """Tokens that always go in as tokens: role headers, the query, pinned text."""

    token_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ExpandedChunk:
    """A chunk the policy expanded: its real tokens. ``row`` is its chunk-embedding row."""

    token_ids: tuple[int, ...]
    row: int = -1


@dataclass(frozen=True, slots=True)
class CompressedChunk:
    """A chunk fed as one projected embedding: row ``row`` of the plan's chunk embeddings.

    ``n_tokens`` is how many tokens the chunk stands for (for the plan's record only).
    """

    row: int
    n_tokens: int = 0


Placement = TokenSpan | ExpandedChunk | CompressedChunk


@dataclass(frozen=True)
class PlacementPlan:
    """What one decoder call reads, in order, and the encoder vectors it refers to.

    ``chunk_embeddings`` are encoder outputs (before the projector), shape
    ``(n_chunks, encoder_dim)``; compressed placements index its rows.
    """

    placements: tuple[Placement, ...]
    chunk_embeddings: torch.Tensor | None = None
    n_positions: int = field(init=False)
    n_tokens_held: int = field(init=False)

    def __post_init__(self) -> None:
        positions = held = 0
        n_rows = 0 if self.chunk_embeddings is None else int(self.chunk_embeddings.shape[0])
        for p in self.placements:
            if isinstance(p, CompressedChunk):
                if not 0 <= p.row < n_rows:
                    raise InvalidInput(
                        "compressed chunk refers to a missing embedding row",
                        row=p.row,
                        n_rows=n_rows,
                    )
                positions += 1
                held += p.n_tokens
            else:
                positions += len(p.token_ids)
                held += len(p.token_ids)
        if positions == 0:
            raise InvalidInput("a plan must place at least one position")
        object.__setattr__(self, "n_positions", positions)
        object.__setattr__(self, "n_tokens_held", held)

    @property
    def n_compressed(self) -> int:
        return sum(isinstance(p, CompressedChunk) for p in self.placements)

    @property
    def n_expanded(self) -> int:
        return sum(isinstance(p, ExpandedChunk) for p in self.placements)


@dataclass(frozen=True)
class AssembledBatch:
    """Decoder inputs for a batch of plans, left-padded to a common length ``T``."""

    inputs_embeds: torch.Tensor  # (B, T, d)
    attention_mask: torch.Tensor  # (B, T), 1 for real positions
    position_ids: torch.Tensor  # (B, T), 0.. per row; pads get 0
    lengths: tuple[int, ...]


def assemble(
    plans: Sequence[PlacementPlan],
    embed_tokens: nn.Module,
    projector: nn.Module | None,
) -> AssembledBatch:
    """Build ``inputs_embeds``, attention mask and position ids for a batch of plans.

    Token ids of every row go through the decoder's embedding table in one lookup and all
    compressed chunks through the projector in one call, then both are scattered into
    their slots: the per-placement work is index bookkeeping only.
    """
    if not plans:
        raise InvalidInput("assemble needs at least one plan")
    weight = next(embed_tokens.parameters())
    device, dtype = weight.device, weight.dtype
    lengths = [p.n_positions for p in plans]
    batch, width = len(plans), max(lengths)

    token_ids: list[int] = []
    token_slots: list[int] = []
    chunk_slots: list[int] = []
    chunk_vecs: list[torch.Tensor] = []
    for b, plan in enumerate(plans):
        slot = b * width + (width - lengths[b])  # left padding
        rows: list[int] = []
        for p in plan.placements:
            if isinstance(p, CompressedChunk):
                rows.append(p.row)
                chunk_slots.append(slot)
                slot += 1
            else:
                n = len(p.token_ids)
                token_ids.extend(p.token_ids)
                token_slots.extend(range(slot, slot + n))
                slot += n
        if rows:
            assert plan.chunk_embeddings is not None
            chunk_vecs.append(plan.chunk_embeddings[torch.tensor(rows)])  # (n_rows, enc_dim)

    flat: torch.Tensor | None = None
    if token_ids:
        ids = torch.tensor(token_ids, dtype=torch.long, device=device)
        tok = embed_tokens(ids)  # (n_tokens, d)
        flat = tok.new_zeros(batch * width, tok.shape[-1])
        flat[torch.tensor(token_slots, device=device)] = tok
    if chunk_vecs:
        if projector is None:
            raise InvalidInput("plans hold compressed chunks but no projector was given")
        vecs = torch.cat(chunk_vecs).to(device)  # (n_chunks, enc_dim)
        proj = projector(vecs.to(next(projector.parameters()).dtype)).to(dtype)  # (n_chunks, d)
        if flat is None:
            flat = proj.new_zeros(batch * width, proj.shape[-1])
        if proj.shape[-1] != flat.shape[-1]:
            raise InvalidInput(
                "projector output width differs from the decoder hidden size",
                projector=int(proj.shape[-1]),
                decoder=int(flat.shape[-1]),
            )
        flat[torch.tensor(chunk_slots, device=device)] = proj
    assert flat is not None  # n_positions >= 1 for every plan
    inputs_embeds = flat.view(batch, width, -1)  # (B, T, d)

    lens = torch.tensor(lengths, device=device)
    cols = torch.arange(width, device=device).unsqueeze(0)  # (1, T)
    pad = (width - lens).unsqueeze(1)  # (B, 1)
    attention_mask = (cols >= pad).long()  # (B, T)
    position_ids = (cols - pad).clamp_min(0)  # (B, T): one position per element
    return AssembledBatch(inputs_embeds, attention_mask, position_ids, tuple(lengths))
