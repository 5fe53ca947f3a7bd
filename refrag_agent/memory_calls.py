"""The memory calls of a session that mem0 and LangGraph store users know.

``Session.add_messages``, ``search`` and ``delete`` are thin wrappers over these
functions, which work on a store, a scope and (for writes) the model that chunks text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from refrag_agent.errors import InvalidInput
from refrag_agent.memory import MemoryStore, SearchHit
from refrag_agent.memory.validation import check_length, check_segment
from refrag_agent.messages import (
    AssistantMessage,
    Messages,
    MessageWrite,
    ToolMessage,
    plan_writes,
    read_messages,
)
from refrag_agent.timeline import Scope, Segment, SegmentKind

if TYPE_CHECKING:
    from refrag_agent.model.refrag import RefragModel

MAX_SEARCH_LIMIT = 1000  # the store's own cap on one search
CHUNKS_PER_HIT = 4  # chunk hits asked of the store per segment wanted, as several may share one


class MemoryHit(BaseModel):
    """A segment found by ``Session.search``, with the chunk that matched best."""

    model_config = ConfigDict(frozen=True)

    segment: Segment
    score: float  # reciprocal-rank-fusion score of its best chunk
    chunk_text: str


async def append_messages(
    store: MemoryStore, model: RefragModel, scope: Scope, messages: Messages
) -> list[Segment]:
    """Write OpenAI-style messages as segments, all or nothing; return them in order."""
    parsed = read_messages(messages)
    stored_calls: dict[str, str] = {}
    answered: set[str] = set()
    if any(
        isinstance(m, ToolMessage) or (isinstance(m, AssistantMessage) and m.tool_calls)
        for m in parsed
    ):
        paired = await store.timeline(scope, kinds=[SegmentKind.TOOL_CALL, SegmentKind.TOOL_OUTPUT])
        for s in paired:
            call_id = s.metadata.get("tool_call_id")
            if not call_id:
                continue  # an output stored without a call id pairs with nothing
            if s.kind is SegmentKind.TOOL_CALL:
                stored_calls[str(call_id)] = str(s.metadata.get("tool_name") or "")
            else:
                answered.add(str(call_id))
    writes = plan_writes(parsed, stored_calls=stored_calls, answered=answered)
    if not writes:
        return []
    segments = [
        Segment(scope=scope, kind=w.kind, text=w.text, source=w.source, metadata=w.metadata)
        for w in writes
    ]
    settings = store.settings
    for write, segment in zip(writes, segments, strict=True):
        with _naming(write):  # before any text is tokenized
            check_length(segment.text, max_chars=settings.max_segment_chars)
    chunked = await asyncio.to_thread(lambda: [model.chunk(s.text) for s in segments])
    for write, segment, chunks in zip(writes, segments, chunked, strict=True):
        with _naming(write):  # the store checks these too, but could not name the message
            check_segment(
                segment,
                chunks,
                max_chars=settings.max_segment_chars,
                max_chunks=settings.max_chunks_per_segment,
            )
    await store.create_scope(scope)
    results = await store.append_many(
        [(s, c, None) for s, c in zip(segments, chunked, strict=True)]
    )
    return [
        s.model_copy(update={"seq": r.seq, "n_tokens": r.n_tokens, "n_chunks": r.n_chunks})
        for s, r in zip(segments, results, strict=True)
    ]


@contextlib.contextmanager
def _naming(write: MessageWrite) -> Iterator[None]:
    """Re-raise a failed check of ``write`` naming its message and field."""
    try:
        yield
    except InvalidInput as e:
        field = "tool_calls" if write.kind is SegmentKind.TOOL_CALL else "content"
        context = {**e.context, "index": write.index, "field": field}
        raise InvalidInput(
            f"messages[{write.index}].{field}: {e.message}; nothing was written", **context
        ) from e


async def search_memory(
    store: MemoryStore, scope: Scope, query: str, *, limit: int, all_sessions: bool
) -> list[MemoryHit]:
    """The ``limit`` segments that best match ``query`` (hybrid search), best first."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise InvalidInput(f"limit must be an int in [1, {MAX_SEARCH_LIMIT}]", limit=limit)
    chunk_hits = await store.search(
        scope,
        query,
        limit=min(limit * CHUNKS_PER_HIT, MAX_SEARCH_LIMIT),
        all_sessions=all_sessions,
    )
    best: dict[tuple[str, str], SearchHit] = {}
    for hit in chunk_hits:  # best first, so the first chunk of a segment is its best
        best.setdefault((hit.session, hit.segment_id), hit)
    found: list[MemoryHit] = []
    for (session, segment_id), hit in best.items():
        owner = Scope(tenant=scope.tenant, session=session)
        segment = await store.get_segment(owner, segment_id)
        if segment is not None:  # None: deleted since the search
            found.append(MemoryHit(segment=segment, score=hit.score, chunk_text=hit.text))
        if len(found) == limit:
            break
    return found


async def delete_segments(
    store: MemoryStore, scope: Scope, segment_ids: str | Iterable[str]
) -> list[Segment]:
    """Delete segments of the scope by id, all or none; return the deleted segments."""
    if isinstance(segment_ids, str):
        wanted = [segment_ids]
    elif isinstance(segment_ids, Iterable):
        wanted = list(segment_ids)
    else:
        raise InvalidInput(
            "expected a segment id or a list of ids", type=type(segment_ids).__name__
        )
    bad = [i for i in wanted if not isinstance(i, str)]
    if bad:
        raise InvalidInput("segment ids must be strings; nothing was deleted", got=bad[:5])
    found = {i: await store.get_segment(scope, i) for i in dict.fromkeys(wanted)}
    unknown = [i for i, s in found.items() if s is None]
    if unknown:
        raise InvalidInput(
            "no such segment in this session; nothing was deleted",
            unknown=unknown,
            tenant=scope.tenant,
            session=scope.session,
        )
    for segment_id in found:
        await store.forget_segment(scope, segment_id)
    return [s for s in found.values() if s is not None]
