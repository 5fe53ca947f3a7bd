"""Search trusts the SQL timeline, not the chunk rows' own keys, for a hit's scope."""

from __future__ import annotations

import numpy as np

from refrag_agent.memory import keys
from refrag_agent.memory.chunks import SegmentRowInfo, build_rows
from refrag_agent.timeline import Scope

from .conftest import OpenStore, make_segment


async def test_rows_keyed_to_another_scope_are_never_returned(
    backend: OpenStore, scope: Scope
) -> None:
    store = await backend()
    sibling = Scope(tenant=scope.tenant, session="s2")
    stranger = Scope(tenant=f"{scope.tenant}-other", session="s1")
    for s in (scope, sibling, stranger):
        await store.create_scope(s)
    await store.append(*make_segment(scope, "committed heron fact", k=64))
    foreign = {}
    for owner in (sibling, stranger):
        segment, chunks = make_segment(owner, f"heron sighting of {owner.tenant}", k=64)
        await store.append(segment, chunks)
        foreign[owner] = segment
    # Rows filed under `scope` whose segment key is a committed segment of another scope
    # (a bug or a tampered table): the timeline says they are not this scope's.
    for owner, segment in foreign.items():
        _, chunks = make_segment(owner, "forged heron rumour", k=64)
        info = SegmentRowInfo(
            tenant=scope.tenant,
            session=scope.session,
            segment_id=segment.id,
            tenant_key=keys.tenant_key(scope.tenant),
            session_key=keys.session_key(scope),
            segment_key=keys.segment_key(owner, segment.id),
            kind="user",
            domain="user",
            domain_key=keys.domain_key("user"),
            created_at=segment.created_at,
            encoder=store.encoder.fingerprint,
            encoder_key=keys.encoder_key(store.encoder.fingerprint),
        )
        vectors = store.encoder.encode([c.text for c in chunks]).numpy().astype(np.float32)
        rows = build_rows(info, chunks, [c.content_hash for c in chunks], vectors)
        await store._state.chunks.add(rows)
    await store.maintain()
    for mode in ("hybrid", "vector", "text"):
        hits = await store.search(scope, "forged heron rumour", mode=mode, limit=50)
        assert hits and all("forged" not in h.text for h in hits)
        assert {h.session for h in hits} == {"s1"}
        wide = await store.search(
            scope, "forged heron rumour", mode=mode, limit=50, all_sessions=True
        )
        # A row keyed to the sibling session's segment is the tenant's: it may be
        # returned, as that segment's. One keyed to another tenant's never is.
        assert foreign[stranger].id not in {h.segment_id for h in wide}
        assert {h.session for h in wide} <= {"s1", "s2"}
        assert all(h.session == "s2" for h in wide if "forged" in h.text)
