"""Gather: which segments fit the decoder's window, and how much the budget may expand.

The window and the budget are resolved here and nowhere else. Segments are kept first, as
compressed chunks (one position each; pinned segments as all their tokens); the expansion
budget then spends only the room that is left. So a larger budget never leaves out a
segment that a smaller one kept: it expands more of what is already there, up to the room.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from refrag_agent.budget import Budget
from refrag_agent.context.order import with_pairs
from refrag_agent.errors import InvalidInput
from refrag_agent.timeline import Segment

# Positions kept free besides the answer: a margin for the generation prompt's tokens.
MARGIN = 8


def capacity(max_positions: int, max_new_tokens: int) -> int:
    """Prompt positions a decoder with ``max_positions`` has left for context."""
    return max_positions - max_new_tokens - MARGIN


@dataclass(frozen=True)
class Gathered:
    """The segments a call reads, which of them retrieval chose, and the budget it spends."""

    kept: list[Segment]
    retrieved: set[str]
    budget: Budget


def positions(segment: Segment, *, pinned: set[str], frame: int) -> int:
    """Positions a segment costs unexpanded: its frame, and its chunks (pinned: its tokens)."""
    return frame + (segment.n_tokens if segment.id in pinned else segment.n_chunks)


def fits(segments: Sequence[Segment], *, pinned: set[str], frame: int, room: int) -> bool:
    """Whether every segment fits ``room`` unexpanded: then no retrieval is needed."""
    return sum(positions(s, pinned=pinned, frame=frame) for s in segments) <= room


def gather(
    segments: Sequence[Segment],
    *,
    pinned: set[str],
    budget: Budget,
    frame: int,
    room: int,
    hits: Sequence[str] = (),
) -> Gathered:
    """Keep what fits ``room`` positions, then cap ``budget`` by the room left.

    Everything when it fits; otherwise the pinned segments, the newest that fit half the
    room, then retrieval ``hits`` (segment ids, best first) while room remains. Tool calls
    and their outputs are kept or dropped together.
    """
    if fits(segments, pinned=pinned, frame=frame, room=room):
        kept = list(segments)
        retrieved: set[str] = set()
    else:
        chosen = {s.id: s for s in segments if s.id in pinned}
        used = sum(positions(s, pinned=pinned, frame=frame) for s in chosen.values())
        for s in sorted(segments, key=lambda s: -s.seq):  # newest first, half the room
            cost = positions(s, pinned=pinned, frame=frame)
            if s.id not in chosen and used + cost <= room // 2:
                chosen[s.id] = s
                used += cost
        by_id = {s.id: s for s in segments}
        retrieved = set()
        for segment_id in hits:
            match = by_id.get(segment_id)
            if match is None or match.id in chosen:
                continue
            cost = positions(match, pinned=pinned, frame=frame)
            if used + cost <= room:
                chosen[match.id] = match
                retrieved.add(match.id)
                used += cost
        kept = with_pairs(list(chosen.values()), segments)
        retrieved &= {s.id for s in kept}
    used = sum(positions(s, pinned=pinned, frame=frame) for s in kept)
    expandable = sum(s.n_tokens for s in kept if s.id not in pinned)
    return Gathered(kept, retrieved, within_room(budget, expandable, room - used))


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
