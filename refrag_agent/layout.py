"""Lay a session's segments out for one decoder call, and let the policy pick expansions.

Order: system segments first, then the timeline in ``seq`` order; a segment written with
``placement="start"`` or ``"before_query"`` moves there, ``"after:<segment id>"`` right
behind that segment. Each segment is wrapped in its role header and ``<|end|>``; template
tokens always stay tokens, and so do pinned segments (system prompt, the last turns, the
budget's pins). Every other chunk is scored by the policy and expanded or compressed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from refrag_agent.budget import Budget
from refrag_agent.errors import InvalidInput
from refrag_agent.memory import ChunkBatch
from refrag_agent.model.assembly import (
    CompressedChunk,
    ExpandedChunk,
    Placement,
    PlacementPlan,
    TokenSpan,
)
from refrag_agent.model.tokenizer import Tokenizer
from refrag_agent.plan import ChunkDecision, SegmentUse
from refrag_agent.policies import ChunkFeatures, ExpansionPolicy, PolicyInput
from refrag_agent.timeline import Segment, SegmentKind

PLACEMENTS = ("chronological", "start", "before_query")
CONVERSATION = (SegmentKind.USER, SegmentKind.ASSISTANT)


def check_placement(placement: str) -> str:
    """Validate a named placement: one of :data:`PLACEMENTS` or ``"after:<segment id>"``."""
    if placement in PLACEMENTS or (placement.startswith("after:") and len(placement) > 6):
        return placement
    raise InvalidInput(
        "unknown placement", placement=placement, known=[*PLACEMENTS, "after:<segment id>"]
    )


def order_segments(segments: Sequence[Segment], *, query_id: str | None = None) -> list[Segment]:
    """System first, then chronological with the placement moves; 'before_query' segments
    go right before the query's own turn (``query_id``), which closes the layout."""
    by_seq = sorted(segments, key=lambda s: s.seq)
    query = [s for s in by_seq if s.id == query_id]
    by_seq = [s for s in by_seq if s.id != query_id]
    start = [s for s in by_seq if s.kind is SegmentKind.SYSTEM or _place(s) == "start"]
    last = [s for s in by_seq if _place(s) == "before_query" and s not in start]
    after = [s for s in by_seq if _place(s).startswith("after:") and s not in start]
    middle = [s for s in by_seq if s not in start and s not in last and s not in after]
    for seg in after:
        anchor = _place(seg)[len("after:") :]
        index = next((i for i, s in enumerate(middle) if s.id == anchor), len(middle) - 1)
        middle.insert(index + 1, seg)
    return [*start, *middle, *last, *query]


def _place(segment: Segment) -> str:
    return str(segment.metadata.get("placement", "chronological"))


def pinned_ids(segments: Sequence[Segment], budget: Budget, *, last_turns: int) -> set[str]:
    """Segments that stay tokens: system prompts, the last ``last_turns`` turns, the pins."""
    pinned = {s.id for s in segments if s.kind is SegmentKind.SYSTEM}
    turns = [s for s in sorted(segments, key=lambda s: s.seq) if s.kind in CONVERSATION]
    pinned |= {s.id for s in turns[-last_turns:]} if last_turns > 0 else set()
    return pinned | {s.id for s in segments if budget.is_pinned(s.id)}


def concat_batches(batches: Sequence[ChunkBatch]) -> ChunkBatch:
    """Chunks fetched from several sessions of one tenant, as one batch."""
    if len(batches) == 1:
        return batches[0]
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for b in batches:
        offsets.append(b.token_offsets[1:] + base)
        base += int(b.token_offsets[-1])
    return ChunkBatch(
        segment_ids=[sid for b in batches for sid in b.segment_ids],
        seq=np.concatenate([b.seq for b in batches]),
        chunk_index=np.concatenate([b.chunk_index for b in batches]),
        token_values=np.concatenate([b.token_values for b in batches]),
        token_offsets=np.concatenate(offsets),
        texts=[t for b in batches for t in b.texts],
        content_hashes=[h for b in batches for h in b.content_hashes],
        embeddings=np.concatenate([b.embeddings for b in batches]),
        encoder_fingerprint=batches[0].encoder_fingerprint,
        n_reencoded=sum(b.n_reencoded for b in batches),
    )


@dataclass(frozen=True)
class Layout:
    """A laid-out context: the placement plan and its record."""

    plan: PlacementPlan
    segments: list[SegmentUse]
    chunks: list[ChunkDecision]
    spend_per_domain: dict[str, int]
    policy: str


def build_layout(
    segments: Sequence[Segment],
    batch: ChunkBatch,
    *,
    tokenizer: Tokenizer,
    query_vector: torch.Tensor,
    budget: Budget,
    policy: ExpansionPolicy,
    pinned: set[str],
    retrieved: set[str],
    prefix: str = "",
    suffix: str,
) -> Layout:
    """Ordered segments + their stored chunks -> a placement plan with expansions chosen."""
    rows_of: dict[str, list[int]] = {}
    for row, sid in enumerate(batch.segment_ids):
        rows_of.setdefault(sid, []).append(row)
    order = [s for s in segments if s.id in rows_of]
    newest = max((s.seq for s in order), default=0)

    # Chunk rows in layout order, so the policy sees positions as the decoder will.
    rows = [r for s in order for r in rows_of[s.id]]
    token_ids = batch.token_ids
    features = []
    seg_of_row = {r: s for s in order for r in rows_of[s.id]}
    for position, row in enumerate(rows):
        seg = seg_of_row[row]
        features.append(
            ChunkFeatures(
                kind=seg.kind,
                domain=seg.domain,
                n_tokens=len(token_ids[row]),
                position=position,
                age=float(max(0, newest - seg.seq)),
                pinned=seg.id in pinned,
                segment_id=seg.id,
            )
        )
    embeddings = batch.embeddings_tensor()[torch.tensor(rows, dtype=torch.long)]  # (n, d)
    selection = policy.select(PolicyInput(embeddings, query_vector, tuple(features)), budget)
    expanded = set(selection.indices)
    scores = selection.scores.tolist()

    placements: list[Placement] = []
    uses: list[SegmentUse] = []
    decisions: list[ChunkDecision] = []
    spend: dict[str, int] = {}
    end = TokenSpan(tuple(tokenizer.encode("<|end|>", allow_special=True)))
    position = 0
    if prefix:  # template text ahead of the timeline (the tools' instructions)
        span = TokenSpan(tuple(tokenizer.encode(prefix, allow_special=True)))
        placements.append(span)
        position += len(span.token_ids)
    i = 0
    for seg in order:
        header = TokenSpan(tuple(tokenizer.encode(f"<|{seg.kind.value}|>", allow_special=True)))
        first = position
        placements.append(header)
        position += len(header.token_ids)
        n_tokens = 0
        for _ in rows_of[seg.id]:
            ids = tuple(token_ids[rows[i]])
            n_tokens += len(ids)
            if i in expanded:
                placements.append(ExpandedChunk(ids, row=i))
                position += len(ids)
                if seg.id not in pinned:
                    spend[seg.domain] = spend.get(seg.domain, 0) + len(ids)
            else:
                placements.append(CompressedChunk(i, n_tokens=len(ids)))
                position += 1
            decisions.append(
                ChunkDecision(
                    segment_id=seg.id,
                    index=int(batch.chunk_index[rows[i]]),
                    expanded=i in expanded,
                    score=float(scores[i]),
                    n_tokens=len(ids),
                )
            )
            i += 1
        placements.append(end)
        position += len(end.token_ids)
        uses.append(
            SegmentUse(
                segment_id=seg.id,
                kind=seg.kind,
                domain=seg.domain,
                seq=seg.seq,
                position=first,
                n_chunks=len(rows_of[seg.id]),
                n_tokens=n_tokens,
                retrieved=seg.id in retrieved,
                pinned=seg.id in pinned,
            )
        )
    placements.append(TokenSpan(tuple(tokenizer.encode(suffix, allow_special=True))))
    plan = PlacementPlan(tuple(placements), embeddings)
    return Layout(plan, uses, decisions, spend, selection.policy)
