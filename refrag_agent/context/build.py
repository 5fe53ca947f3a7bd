"""Features, selection and the placement plan: one call's context from its segments.

The SDK, the server, training and the benchmarks all build a prompt the same way:

1. :func:`draft` frames each :class:`ContextSegment` with the template (header, chunks,
   end), between a ``prefix`` and a ``suffix`` of template text;
2. :func:`chunk_features` describes every chunk to the policy, one meaning per feature;
3. a policy (or a training recipe) picks the chunks to expand;
4. :func:`place` turns the draft and that choice into the placements of a
   :class:`PlacementPlan` and the record of where each segment went.

Pure functions over token ids and embeddings: no store, no model.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import torch

from refrag_agent.budget import Budget
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
from refrag_agent.template import ChatTemplate
from refrag_agent.timeline import SegmentKind


@dataclass(frozen=True)
class ChunkSlot:
    """One chunk of a segment: its tokens (None when only an embedding is known)."""

    token_ids: tuple[int, ...] | None
    n_tokens: int
    index: int = 0  # the chunk's index within its segment
    text: str = ""  # what training encodes the chunk from


@dataclass(frozen=True)
class ContextSegment:
    """A segment as the context builder sees it.

    ``seq`` orders segments in time (the store's seq, a message's index, a task's segment
    index); a chunk's ``age`` feature is the newest ``seq`` minus its segment's.
    """

    id: str
    kind: SegmentKind
    domain: str
    seq: int
    chunks: tuple[ChunkSlot, ...]
    pinned: bool = False
    retrieved: bool = False


@dataclass(frozen=True)
class Draft:
    """Template spans and chunk slots in prompt order, before any expansion is chosen.

    ``items`` holds a :class:`TokenSpan` or the index of a chunk in ``chunks``;
    ``owners[i]`` is the segment of chunk ``i``; ``starts`` maps a segment's position in
    ``segments`` to its first item.
    """

    segments: tuple[ContextSegment, ...]
    items: tuple[TokenSpan | int, ...]
    chunks: tuple[ChunkSlot, ...]
    owners: tuple[int, ...]
    starts: tuple[int, ...] = field(default=())

    @property
    def expandable(self) -> list[int]:
        """Chunks whose tokens are known: the only ones a policy may expand."""
        return [i for i, c in enumerate(self.chunks) if c.token_ids is not None]

    def pinned_chunks(self) -> set[int]:
        return {i for i, s in enumerate(self.owners) if self.segments[s].pinned}


def span(tokenizer: Tokenizer, text: str) -> TokenSpan:
    """Template text as tokens (special tokens allowed: this text is ours, not a user's)."""
    return TokenSpan(tuple(tokenizer.encode(text, allow_special=True)))


def draft(
    segments: Sequence[ContextSegment],
    *,
    template: ChatTemplate,
    tokenizer: Tokenizer,
    prefix: str = "",
    suffix: str = "",
) -> Draft:
    """Frame ``segments`` in order: ``prefix``, header + chunks + end each, ``suffix``."""
    items: list[TokenSpan | int] = []
    chunks: list[ChunkSlot] = []
    owners: list[int] = []
    starts: list[int] = []
    if prefix:
        items.append(span(tokenizer, prefix))
    end = span(tokenizer, template.end)
    for s, seg in enumerate(segments):
        starts.append(len(items))
        items.append(span(tokenizer, template.header(seg.kind)))
        for slot in seg.chunks:
            items.append(len(chunks))
            chunks.append(slot)
            owners.append(s)
        items.append(end)
    if suffix:
        items.append(span(tokenizer, suffix))
    return Draft(tuple(segments), tuple(items), tuple(chunks), tuple(owners), tuple(starts))


def chunk_features(d: Draft, indices: Sequence[int] | None = None) -> tuple[ChunkFeatures, ...]:
    """What the policy knows of each chunk (of ``indices``, default all), in prompt order.

    ``position``: the chunk's place among the chunks offered; ``age``: how many ``seq``
    steps its segment is older than the newest segment of the call.
    """
    chosen = range(len(d.chunks)) if indices is None else indices
    newest = max((s.seq for s in d.segments), default=0)
    out = []
    for position, i in enumerate(chosen):
        seg = d.segments[d.owners[i]]
        out.append(
            ChunkFeatures(
                kind=seg.kind,
                domain=seg.domain,
                n_tokens=d.chunks[i].n_tokens,
                position=position,
                age=float(max(0, newest - seg.seq)),
                pinned=seg.pinned,
                segment_id=seg.id,
            )
        )
    return tuple(out)


def policy_input(d: Draft, embeddings: torch.Tensor, query: torch.Tensor) -> PolicyInput:
    """The expandable chunks as a policy sees them; ``embeddings`` has a row per chunk."""
    offered = d.expandable
    rows = torch.tensor(offered, dtype=torch.long)
    return PolicyInput(embeddings[rows], query, chunk_features(d, offered))


@dataclass(frozen=True)
class Choice:
    """The chunks to expand (draft indices), every chunk's score, and who chose."""

    expanded: set[int]
    scores: list[float]
    policy: str


def select(
    d: Draft,
    policy: ExpansionPolicy,
    embeddings: torch.Tensor,
    query: torch.Tensor,
    budget: Budget,
) -> Choice:
    """Let ``policy`` choose among the expandable chunks under ``budget``."""
    offered = d.expandable
    scores = [0.0] * len(d.chunks)
    if not offered:
        return Choice(set(), scores, policy.name)
    selection = policy.select(policy_input(d, embeddings, query), budget)
    for j, score in enumerate(selection.scores.tolist()):
        scores[offered[j]] = float(score)
    return Choice({offered[j] for j in selection.indices}, scores, selection.policy)


@dataclass(frozen=True)
class Layout:
    """A laid-out context: its placements (chunks by draft index) and their record."""

    placements: tuple[Placement, ...]
    segments: list[SegmentUse]
    chunks: list[ChunkDecision]
    spend_per_domain: dict[str, int]
    policy: str

    def plan(self, embeddings: torch.Tensor | None) -> PlacementPlan:
        """The decoder's plan; ``embeddings`` has one row per chunk of the draft."""
        return PlacementPlan(self.placements, embeddings)


def place(d: Draft, choice: Choice | Collection[int], *, leave_out: bool = False) -> Layout:
    """Chunks chosen as tokens, every other one as one embedding row (its draft index).

    ``choice`` is a policy's :class:`Choice` or a set of draft indices (training recipes).
    Pinned chunks are always tokens; chunks without tokens never are. ``leave_out``
    (``Budget(unexpanded="left_out")``): the other chunks are not fed at all, and a
    segment with no chunk fed and no pin is left out whole, header and end included.
    """
    if not isinstance(choice, Choice):
        choice = Choice(set(choice), [0.0] * len(d.chunks), "")
    expand = choice.expanded | d.pinned_chunks()
    skipped: set[int] = set()  # draft items left out
    if leave_out:
        fed = {i for i in expand if d.chunks[i].token_ids is not None}
        expand = fed
        kept = {d.owners[i] for i in fed} | {s for s, g in enumerate(d.segments) if g.pinned}
        for s, start in enumerate(d.starts):
            end = start + len(d.segments[s].chunks) + 1  # header, chunks, end
            if s not in kept:
                skipped.update(range(start, end + 1))
        skipped.update(n for n, it in enumerate(d.items) if isinstance(it, int) and it not in fed)
    placements: list[Placement] = []
    decisions: list[ChunkDecision] = []
    spend: dict[str, int] = {}
    first: dict[int, int] = {}
    held: dict[int, int] = {}
    position = 0
    starts = {item: s for s, item in enumerate(d.starts)}
    for n, item in enumerate(d.items):
        if n in skipped:
            continue
        if n in starts:
            first[starts[n]] = position
        if isinstance(item, TokenSpan):
            placements.append(item)
            position += len(item.token_ids)
            continue
        slot, s = d.chunks[item], d.owners[item]
        seg = d.segments[s]
        held[s] = held.get(s, 0) + slot.n_tokens
        if item in expand and slot.token_ids is not None:
            placements.append(ExpandedChunk(slot.token_ids, row=item))
            position += len(slot.token_ids)
            if not seg.pinned:
                spend[seg.domain] = spend.get(seg.domain, 0) + slot.n_tokens
        else:
            placements.append(CompressedChunk(item, n_tokens=slot.n_tokens))
            position += 1
        decisions.append(
            ChunkDecision(
                segment_id=seg.id,
                index=slot.index,
                expanded=item in expand and slot.token_ids is not None,
                score=choice.scores[item],
                n_tokens=slot.n_tokens,
            )
        )
    uses = [
        SegmentUse(
            segment_id=seg.id,
            kind=seg.kind,
            domain=seg.domain,
            seq=seg.seq,
            position=first.get(s, 0),
            n_chunks=len(seg.chunks),
            n_tokens=held.get(s, 0),
            retrieved=seg.retrieved,
            pinned=seg.pinned,
        )
        for s, seg in enumerate(d.segments)
        if not leave_out or s in first
    ]
    return Layout(tuple(placements), uses, decisions, spend, choice.policy)
