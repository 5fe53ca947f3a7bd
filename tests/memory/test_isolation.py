"""Tenants and sessions with hostile ids never see each other's data."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refrag_agent.errors import InvalidInput
from refrag_agent.memory import keys
from refrag_agent.timeline import Scope

from .conftest import HOSTILE_IDS, OpenStore, make_segment


def _secret(tenant_index: int, session_index: int) -> str:
    return f"secret zebra{tenant_index}x{session_index} shared words everyone writes"


async def test_hostile_ids_are_isolated_through_every_read(backend: OpenStore) -> None:
    store = await backend()
    scopes = {}
    for t, tenant in enumerate(HOSTILE_IDS):
        for s, session in enumerate(HOSTILE_IDS[:2] if t else HOSTILE_IDS):
            scope = Scope(tenant=tenant, session=session)
            assert await store.create_scope(scope)
            # Segment ids are hostile too, and the same id in every scope.
            segment, chunks = make_segment(scope, _secret(t, s), id=HOSTILE_IDS[(t + s) % 12])
            await store.append(segment, chunks)
            scopes[(t, s)] = (scope, segment.id)
    await store.maintain()  # full-text index built
    for (t, s), (scope, segment_id) in scopes.items():
        timeline = await store.timeline(scope)
        assert [seg.text for seg in timeline] == [_secret(t, s)]
        batch = await store.fetch(scope, [segment_id])
        assert "".join(batch.texts) == _secret(t, s)
        got = await store.get_segment(scope, segment_id)
        assert got is not None and got.text == _secret(t, s)
        for mode in ("hybrid", "vector", "text"):
            hits = await store.search(scope, "secret zebra shared words", limit=50, mode=mode)
            assert hits, mode
            assert {h.segment_id for h in hits} == {segment_id}
            assert all(h.session == scope.session for h in hits)
            wide = await store.search(
                scope, "secret zebra shared words", limit=50, mode=mode, all_sessions=True
            )
            own = {(sc.session, sid) for (tt, _), (sc, sid) in scopes.items() if tt == t}
            assert wide and {(h.session, h.segment_id) for h in wide} <= own
        sessions = await store.list_sessions(scope.tenant)
        assert scope.session in sessions
        assert len(sessions) == (len(HOSTILE_IDS) if t == 0 else 2)
    # Another scope's segment id is not visible, even when the id string is the same.
    (_, foreign_id), (scope_b, own_id) = scopes[(1, 0)], scopes[(2, 1)]
    assert foreign_id != own_id
    with pytest.raises(InvalidInput):
        await store.fetch(scope_b, [foreign_id])
    assert await store.get_segment(scope_b, foreign_id) is None
    assert not await store.forget_segment(scope_b, foreign_id)
    # Forgetting one tenant leaves every other tenant whole.
    assert await store.forget_tenant(HOSTILE_IDS[2]) == 2
    for (t, s), (scope, segment_id) in scopes.items():
        if t == 2:
            assert not await store.has_scope(scope)
            continue
        assert "".join((await store.fetch(scope, [segment_id])).texts) == _secret(t, s)
    stats = await store.stats()
    assert stats.segments == len(scopes) - 2 and stats.chunks > 0


def test_filters_only_ever_hold_store_keys() -> None:
    hostile = "x' OR '1'='1"
    with pytest.raises(AssertionError):
        keys.eq("tenant_key", hostile)
    with pytest.raises(AssertionError):
        keys.isin("segment_key", [keys.tenant_key("a"), hostile])
    assert keys.eq("tenant_key", keys.tenant_key(hostile)).count("'") == 2


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    tenant=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=40,
    )
)
def test_any_id_maps_to_a_plain_hex_key(tenant: str) -> None:
    scope = Scope(tenant=tenant, session=tenant[::-1] or "s")
    for key in (keys.tenant_key(tenant), keys.session_key(scope), keys.segment_key(scope, tenant)):
        assert len(key) == 32 and set(key) <= set("0123456789abcdef")
    assert keys.tenant_key(tenant) != keys.tenant_key(tenant + " ")


async def test_hostile_search_queries(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    await store.append(*make_segment(scope, "ordinary words about apples", k=64))
    await store.maintain()
    for query in [*HOSTILE_IDS, '"unbalanced', "a AND OR NOT", "title:x", "+-*~^", "(((", "*"]:
        for mode in ("hybrid", "text"):
            hits = await store.search(scope, query, mode=mode)
            assert all(h.session == scope.session for h in hits)
