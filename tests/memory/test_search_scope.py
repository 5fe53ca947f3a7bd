"""Search trusts the SQL timeline, not the chunk rows' own keys, for a hit's scope."""

from __future__ import annotations

from refrag_agent.timeline import Scope

from .conftest import OpenStore, add_raw_chunk_rows, make_segment


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
        await add_raw_chunk_rows(store, scope, segment, chunks, owner=owner)
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
