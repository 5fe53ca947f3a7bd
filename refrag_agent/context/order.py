"""Lay out: which segments a call reads and in what order; pure functions over segments.

Order: system segments first, then the timeline in ``seq`` order; a segment written with
``placement="start"`` or ``"before_query"`` moves there, ``"after:<segment id>"`` right
behind that segment; the query's turn comes after them all, followed only by what was
written after it (a tool loop's own calls and outputs). System prompts, the last turns
and the budget's pins stay tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from refrag_agent.budget import Budget
from refrag_agent.errors import InvalidInput
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
    go right before the query's own turn (``query_id``). What was written after the query
    (the call's own tool calls and outputs, in a tool loop's later steps) follows it in
    the order written; otherwise the query closes the layout."""
    by_seq = sorted(segments, key=lambda s: s.seq)
    query = [s for s in by_seq if s.id == query_id]
    if query:
        query += [s for s in by_seq if s.seq > query[0].seq]
    closing = {s.id for s in query}
    by_seq = [s for s in by_seq if s.id not in closing]
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


def with_pairs(kept: Sequence[Segment], everything: Sequence[Segment]) -> list[Segment]:
    """Keep tool calls and their outputs together: a pair is kept whole or dropped whole."""
    members: dict[str, set[str]] = {}
    for s in everything:
        call_id = s.metadata.get("tool_call_id")
        if call_id and s.kind in (SegmentKind.TOOL_CALL, SegmentKind.TOOL_OUTPUT):
            members.setdefault(str(call_id), set()).add(s.id)
    ids = {s.id for s in kept}
    return [
        s
        for s in kept
        if not (call_id := s.metadata.get("tool_call_id"))
        or str(call_id) not in members
        or members[str(call_id)] <= ids
    ]
