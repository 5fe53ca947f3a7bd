"""One decoder call's context for a session: read the store, then the context builder.

The store gives the session's timeline, retrieval hits when it does not fit, segments of
the tenant's other sessions (``recall="tenant"``) and the chunks; everything after that
(gather, lay out, features, select, place) is :mod:`refrag_agent.context`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from refrag_agent.budget import Budget
from refrag_agent.context import (
    capacity,
    concat_batches,
    draft,
    fits,
    frame_positions,
    gather,
    order_segments,
    pinned_ids,
    place,
    positions,
    select,
    stored_context,
)
from refrag_agent.memory import ChunkBatch, MemoryStore
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.refrag import RefragModel
from refrag_agent.plan import ContextPlan
from refrag_agent.policies import ExpansionPolicy
from refrag_agent.template import REFRAG_TEMPLATE
from refrag_agent.timeline import Scope, Segment

RECALL_SEGMENTS = 4  # segments brought in from the tenant's other sessions, at most


@dataclass(frozen=True)
class Planner:
    """What planning a session's call needs: its memory, model, policy and pins."""

    store: MemoryStore
    model: RefragModel
    policy: ExpansionPolicy
    pin_last_turns: int

    async def plan(
        self,
        scope: Scope,
        asked: Segment,
        budget: Budget,
        *,
        max_new_tokens: int,
        recall_tenant: bool,
        preamble: str = "",
    ) -> tuple[PlacementPlan, ContextPlan]:
        """The plan that answers ``asked`` (the query's stored turn) and its record."""
        store, model = self.store, self.model
        tokenizer, template = model.tokenizer, REFRAG_TEMPLATE
        query = asked.text
        segments = await store.timeline(scope)
        pinned = pinned_ids(segments, budget, last_turns=max(1, self.pin_last_turns))
        frame = frame_positions(template, tokenizer)
        fixed = len(tokenizer.encode(preamble, allow_special=True)) if preamble else 0
        room = capacity(model.shape.max_positions, max_new_tokens) - fixed
        recalled, batches = await self.recall(scope, query) if recall_tenant else ([], [])
        room -= sum(positions(s, pinned=set(), frame=frame) for s in recalled)
        hits: list[str] = []
        if not fits(segments, pinned=pinned, frame=frame, room=room):
            hits = [h.segment_id for h in await store.search(scope, query, limit=50)]
        gathered = gather(segments, pinned=pinned, budget=budget, frame=frame, room=room, hits=hits)
        ordered = [*recalled, *order_segments(gathered.kept, query_id=asked.id)]
        batches.append(await store.fetch(scope, [s.id for s in gathered.kept]))
        retrieved = gathered.retrieved | {s.id for s in recalled}
        context, table = stored_context(
            ordered, concat_batches(batches), pinned=pinned, retrieved=retrieved
        )
        d = draft(
            context,
            template=template,
            tokenizer=tokenizer,
            prefix=preamble,
            suffix=template.generation_prompt,
        )
        vectors = await asyncio.to_thread(model.encode, [query])
        layout = place(d, select(d, self.policy, table, vectors[0], gathered.budget))
        plan = layout.plan(table)
        expanded = sum(c.expanded for c in layout.chunks)
        record = ContextPlan(
            scope=scope,
            query=query,
            policy=layout.policy,
            segments=layout.segments,
            chunks=layout.chunks,
            spend_per_domain=layout.spend_per_domain,
            tokens_held=plan.n_tokens_held,
            positions_fed=plan.n_positions,
            chunks_expanded=expanded,
            chunks_compressed=len(layout.chunks) - expanded,
            effective_compression=plan.n_tokens_held / plan.n_positions,
            segments_left_in_store=len(segments) - len(gathered.kept),
        )
        return plan, record

    async def recall(self, scope: Scope, query: str) -> tuple[list[Segment], list[ChunkBatch]]:
        """The best-matching segments of the tenant's other sessions, and their chunks."""
        store = self.store
        hits = await store.search(scope, query, limit=20, all_sessions=True)
        wanted: dict[tuple[str, str], None] = {}
        for hit in hits:
            if hit.session != scope.session and len(wanted) < RECALL_SEGMENTS:
                wanted[(hit.session, hit.segment_id)] = None
        segments: list[Segment] = []
        batches: list[ChunkBatch] = []
        for session, segment_id in wanted:
            other = Scope(tenant=scope.tenant, session=session)
            found = await store.get_segment(other, segment_id)
            if found is not None:
                segments.append(found)
                batches.append(await store.fetch(other, [segment_id]))
        return segments, batches
