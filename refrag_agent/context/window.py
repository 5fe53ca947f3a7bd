"""Gather: which segments fit the decoder's window, and how much the budget may expand.

The window and the budget are resolved here and nowhere else. Segments are kept first, as
compressed chunks (one position each; pinned segments as all their tokens); the expansion
budget then spends only the room that is left. So a larger budget never leaves out a
segment that a smaller one kept: it expands more of what is already there, up to the room.

A segment's frame (its header and end) is charged at its own kind's length: with ChatML a
turn's frame is 5 positions and a tool call's 11, and charging every segment the longest
would turn away a long conversation that fits. Retrieval only decides what goes when the
timeline does not fit; whatever is left out is named, with the reason, in :class:`Dropped`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from refrag_agent.budget import Budget
from refrag_agent.context.build import span
from refrag_agent.context.order import with_pairs
from refrag_agent.errors import InvalidInput
from refrag_agent.model.tokenizer import Tokenizer
from refrag_agent.plan import DroppedSegment
from refrag_agent.template import ChatTemplate
from refrag_agent.timeline import Segment, SegmentKind

# Positions kept free besides the answer: a margin for the generation prompt's tokens.
MARGIN = 8

Frame = int | Mapping[SegmentKind, int]
"""A segment's frame in positions: one figure for every kind, or one per kind."""


def capacity(max_positions: int, max_new_tokens: int) -> int:
    """Prompt positions a decoder with ``max_positions`` has left for context."""
    return max_positions - max_new_tokens - MARGIN


def frames(template: ChatTemplate, tokenizer: Tokenizer) -> dict[SegmentKind, int]:
    """Positions each kind's frame costs: its header and the end, as the draft frames it."""
    end = len(span(tokenizer, template.end).token_ids)
    return {k: len(span(tokenizer, template.header(k)).token_ids) + end for k in SegmentKind}


@dataclass(frozen=True)
class Gathered:
    """The segments a call reads, which of them retrieval chose, the budget it spends and
    the segments left out (with the reason), oldest first."""

    kept: list[Segment]
    retrieved: set[str]
    budget: Budget
    dropped: list[DroppedSegment] = field(default_factory=list)


def positions(segment: Segment, *, pinned: set[str], frame: Frame) -> int:
    """Positions a segment costs unexpanded: its frame, and its chunks (pinned: its tokens)."""
    own = frame if isinstance(frame, int) else frame[segment.kind]
    return own + (segment.n_tokens if segment.id in pinned else segment.n_chunks)


def fits(segments: Sequence[Segment], *, pinned: set[str], frame: Frame, room: int) -> bool:
    """Whether every segment fits ``room`` unexpanded: then no retrieval is needed."""
    return sum(positions(s, pinned=pinned, frame=frame) for s in segments) <= room


def gather(
    segments: Sequence[Segment],
    *,
    pinned: set[str],
    budget: Budget,
    frame: Frame,
    room: int,
    hits: Sequence[str] = (),
) -> Gathered:
    """Keep what fits ``room`` positions, then cap ``budget`` by the room left.

    Everything when it fits; otherwise the pinned segments, the newest that fit half the
    room, then retrieval ``hits`` (segment ids, best first), then the newest of the rest,
    while room remains. Tool calls and their outputs are kept or dropped together.
    """
    retrieved: set[str] = set()
    if fits(segments, pinned=pinned, frame=frame, room=room):
        chosen = {s.id for s in segments}
    else:
        chosen, retrieved = _choose(segments, pinned=pinned, frame=frame, room=room, hits=hits)
    kept = with_pairs([s for s in segments if s.id in chosen], segments)
    kept_ids = {s.id for s in kept}
    dropped = [
        DroppedSegment(
            segment_id=s.id,
            kind=s.kind,
            seq=s.seq,
            positions=positions(s, pinned=pinned, frame=frame),
            reason="tool_pair" if s.id in chosen else "window",
        )
        for s in sorted(segments, key=lambda s: s.seq)
        if s.id not in kept_ids
    ]
    used = sum(positions(s, pinned=pinned, frame=frame) for s in kept)
    expandable = sum(s.n_tokens for s in kept if s.id not in pinned)
    budget = within_room(budget, expandable, room - used)
    return Gathered(kept, retrieved & kept_ids, budget, dropped)


def _choose(
    segments: Sequence[Segment], *, pinned: set[str], frame: Frame, room: int, hits: Sequence[str]
) -> tuple[set[str], set[str]]:
    """The ids that fit ``room`` when not all do, and those of them retrieval chose."""
    chosen = {s.id for s in segments if s.id in pinned}
    used = sum(positions(s, pinned=pinned, frame=frame) for s in segments if s.id in chosen)
    newest = sorted(segments, key=lambda s: -s.seq)
    by_id = {s.id: s for s in segments}
    found = [by_id[h] for h in dict.fromkeys(hits) if h in by_id]
    retrieved: set[str] = set()
    # Half the room for the newest, then retrieval's picks, then the newest again: room
    # that retrieval leaves is not wasted.
    for candidates, limit, by_search in (
        (newest, room // 2, False),
        (found, room, True),
        (newest, room, False),
    ):
        for s in candidates:
            cost = positions(s, pinned=pinned, frame=frame)
            if s.id not in chosen and used + cost <= limit:
                chosen.add(s.id)
                used += cost
                if by_search:
                    retrieved.add(s.id)
    return chosen, retrieved


def within_room(budget: Budget, expandable_tokens: int, room: int) -> Budget:
    """``budget``, its total capped so expanded tokens fit ``room`` more positions."""
    if room < 0:
        raise InvalidInput(
            "the pinned context alone exceeds the decoder's positions",
            over_by=-room,
            fix="pin fewer turns, shorten the system prompt, or use a decoder with more positions",
        )
    if budget.total_allowance(expandable_tokens) <= room:
        return budget
    return budget.model_copy(update={"tokens": room, "p": None})
