"""One decoder call's context for a session: read the store, then the context builder.

The store gives the session's timeline, retrieval hits when it does not fit, segments of
the tenant's other sessions (``recall="tenant"``) and the chunks; everything after that
(gather, lay out, features, select, place) is :mod:`refrag_agent.context`.

The query comes as a :class:`QueryTurn`: its segment, chunks and embeddings, stored or
not yet. A call is planned before its query is stored, so a call that cannot be planned
stores nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from refrag_agent.budget import Budget
from refrag_agent.context import (
    capacity,
    draft,
    fits,
    gather,
    order_segments,
    pinned_ids,
    place,
    positions,
    select,
)
from refrag_agent.context.build import Layout
from refrag_agent.context.stored import concat_batches, stored_context
from refrag_agent.context.window import frames
from refrag_agent.errors import InvalidInput
from refrag_agent.memory import ChunkBatch, MemoryStore
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.refrag import RefragModel
from refrag_agent.plan import ContextPlan, DroppedSegment
from refrag_agent.policies import ExpansionPolicy
from refrag_agent.timeline import Chunk, Scope, Segment, SegmentKind

RECALL_SEGMENTS = 4  # segments brought in from the tenant's other sessions, at most


@dataclass(frozen=True)
class QueryTurn:
    """A call's query as a user turn: its segment (``n_tokens``, ``n_chunks`` set), its
    chunks and their embeddings (float32, (n_chunks, dim)), ready to store once planned;
    and ``vector``, the whole query's encoding (float32, (dim,)) that the policy reads,
    where it came with the chunks' (else the plan encodes the query for the policy)."""

    segment: Segment
    chunks: list[Chunk]
    embeddings: npt.NDArray[np.float32]
    vector: npt.NDArray[np.float32] | None = None

    def batch(self, *, seq: int, encoder_fingerprint: str) -> ChunkBatch:
        """The query's chunks as the store would fetch them, at ``seq``."""
        n = len(self.chunks)
        lengths = [len(c.token_ids) for c in self.chunks]
        return ChunkBatch(
            segment_ids=[self.segment.id] * n,
            seq=np.full(n, seq, dtype=np.int64),
            chunk_index=np.array([c.index for c in self.chunks], dtype=np.int32),
            token_values=np.array([t for c in self.chunks for t in c.token_ids], dtype=np.int32),
            token_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            texts=[c.text for c in self.chunks],
            content_hashes=[c.content_hash for c in self.chunks],
            embeddings=self.embeddings,
            encoder_fingerprint=encoder_fingerprint,
        )


@dataclass(frozen=True)
class Planner:
    """What planning a session's call needs: its memory, model, policy and pins."""

    store: MemoryStore
    model: RefragModel
    policy: ExpansionPolicy
    pin_last_turns: int

    def check_query(self, asked: Segment, *, max_new_tokens: int, preamble: str = "") -> None:
        """Raise :class:`InvalidInput` unless the query, as tokens, and the answer fit the
        decoder's window; nothing is read or written."""
        frame = frames(self.model.template, self.model.tokenizer)
        self._check_fits(asked, self._room(max_new_tokens, preamble), frame, max_new_tokens)

    def _check_fits(
        self, asked: Segment, room: int, frame: dict[SegmentKind, int], max_new_tokens: int
    ) -> None:
        if room <= frame[asked.kind]:
            window = self.model.shape.max_positions
            raise InvalidInput(
                "max_new_tokens leaves no room for the prompt in the decoder's window",
                max_new_tokens=max_new_tokens,
                max_positions=window,
                fix=f"ask for fewer new tokens: the prompt and the answer share {window}",
            )
        if positions(asked, pinned={asked.id}, frame=frame) > room:
            raise InvalidInput(
                "the query does not fit the decoder's window as tokens",
                query_tokens=asked.n_tokens,
                limit=room - frame[asked.kind],
                max_new_tokens=max_new_tokens,
                fix="shorten the query, or store long text with add_document and ask about it",
            )

    async def plan(
        self,
        scope: Scope,
        query: QueryTurn,
        budget: Budget,
        *,
        max_new_tokens: int,
        recall_tenant: bool,
        preamble: str = "",
    ) -> tuple[PlacementPlan, ContextPlan]:
        """The plan that answers ``query`` and its record; the query need not be stored."""
        store, model = self.store, self.model
        tokenizer, template = model.tokenizer, model.template
        frame = frames(template, tokenizer)
        room = self._room(max_new_tokens, preamble)
        asked, text = query.segment, query.segment.text
        self._check_fits(asked, room, frame, max_new_tokens)
        segments = await store.timeline(scope)
        if all(s.id != asked.id for s in segments):  # not stored yet: it comes last
            newest = max((s.seq for s in segments), default=-1)
            asked = asked.model_copy(update={"seq": newest + 1})
            segments.append(asked)
        pinned = pinned_ids(segments, budget, last_turns=max(1, self.pin_last_turns))
        recalled, batches = await self.recall(scope, text) if recall_tenant else ([], [])
        room -= sum(positions(s, pinned=set(), frame=frame) for s in recalled)
        hits: list[str] = []
        if not fits(segments, pinned=pinned, frame=frame, room=room):
            hits = [h.segment_id for h in await store.search(scope, text, limit=50)]
        gathered = gather(segments, pinned=pinned, budget=budget, frame=frame, room=room, hits=hits)
        ordered = [*recalled, *order_segments(gathered.kept, query_id=asked.id)]
        batches.append(await store.fetch(scope, [s.id for s in gathered.kept if s.id != asked.id]))
        batches.append(query.batch(seq=asked.seq, encoder_fingerprint=store.encoder.fingerprint))
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
        if query.vector is not None:
            vector = torch.from_numpy(query.vector)  # (dim,)
        else:
            vector = (await asyncio.to_thread(model.encode, [text]))[0]
        choice = select(d, self.policy, table, vector, gathered.budget)
        layout = place(d, choice, leave_out=budget.unexpanded == "left_out")
        plan = layout.plan(table)
        expanded = sum(c.expanded for c in layout.chunks)
        record = ContextPlan(
            scope=scope,
            query=text,
            policy=layout.policy,
            segments=layout.segments,
            chunks=layout.chunks,
            spend_per_domain=layout.spend_per_domain,
            tokens_held=plan.n_tokens_held,
            positions_fed=plan.n_positions,
            chunks_expanded=expanded,
            chunks_compressed=len(layout.chunks) - expanded,
            effective_compression=plan.n_tokens_held / plan.n_positions,
            segments_left_in_store=len(gathered.dropped),
            dropped=sorted(
                [*gathered.dropped, *left_out(gathered.kept, layout, pinned=pinned, frame=frame)],
                key=lambda s: s.seq,
            ),
        )
        return plan, record

    def _room(self, max_new_tokens: int, preamble: str) -> int:
        """Positions left for the context: the window less the answer and ``preamble``."""
        tokens = self.model.tokenizer.encode(preamble, allow_special=True) if preamble else []
        return capacity(self.model.shape.max_positions, max_new_tokens) - len(tokens)

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


def left_out(
    kept: list[Segment], layout: Layout, *, pinned: set[str], frame: dict[SegmentKind, int]
) -> list[DroppedSegment]:
    """Segments gathered but fed nothing (``Budget(unexpanded="left_out")``), as dropped."""
    placed = {u.segment_id for u in layout.segments}
    return [
        DroppedSegment(
            segment_id=s.id,
            kind=s.kind,
            seq=s.seq,
            positions=positions(s, pinned=pinned, frame=frame),
            reason="left_out",
        )
        for s in kept
        if s.id not in placed
    ]
