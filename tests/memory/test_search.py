from __future__ import annotations

from datetime import datetime, timedelta, timezone

from refrag_agent.memory import rrf
from refrag_agent.timeline import Scope, SegmentKind

from .conftest import OpenStore, add_raw_chunk_rows, make_segment


def test_rrf_fuses_by_reciprocal_rank() -> None:
    fused = rrf([["a", "b", "c"], ["c", "a"]], k=60)
    scores = dict(fused)
    assert [item for item, _ in fused] == ["a", "c", "b"]
    assert scores["a"] == 1 / 61 + 1 / 62
    assert scores["c"] == 1 / 63 + 1 / 61
    assert scores["b"] == 1 / 62
    assert rrf([[], []]) == []


async def _seed(store, scope: Scope) -> dict[str, str]:  # type: ignore[no-untyped-def]
    old = datetime(2024, 1, 1, tzinfo=timezone.utc)
    rows = {
        "invoice": (
            "Invoice 42 for ACME is overdue by ten days",
            SegmentKind.TOOL_OUTPUT,
            "billing",
            old,
        ),
        "weather": (
            "The weather in Lisbon is sunny and warm today",
            SegmentKind.USER,
            "chat",
            None,
        ),
        "recipe": (
            "Bake the bread at 220 degrees for forty minutes",
            SegmentKind.DOCUMENT,
            "cooking",
            None,
        ),
        "invoice2": (
            "Second invoice reminder sent to ACME accounting",
            SegmentKind.ASSISTANT,
            "billing",
            None,
        ),
    }
    ids = {}
    for name, (text, kind, domain, created) in rows.items():
        extra = {"created_at": created} if created else {}
        segment, chunks = make_segment(scope, text, kind=kind, domain=domain, k=64, **extra)
        await store.append(segment, chunks)
        ids[name] = segment.id
    return ids


async def test_hybrid_search_with_filters(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    ids = await _seed(store, scope)
    await store.maintain()
    hits = await store.search(scope, "ACME invoice", limit=4)
    assert {h.segment_id for h in hits[:2]} == {ids["invoice"], ids["invoice2"]}
    assert hits[0].vector_rank is not None and hits[0].text_rank is not None
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    text_only = await store.search(scope, "Lisbon", mode="text")
    assert [h.segment_id for h in text_only] == [ids["weather"]]
    vector_only = await store.search(scope, "bread degrees minutes", mode="vector", limit=1)
    assert vector_only[0].segment_id == ids["recipe"] and vector_only[0].text_rank is None
    by_kind = await store.search(scope, "ACME invoice", kinds=[SegmentKind.ASSISTANT])
    assert {h.segment_id for h in by_kind} == {ids["invoice2"]}
    by_domain = await store.search(scope, "invoice", domains=["billing"])
    assert {h.segment_id for h in by_domain} == {ids["invoice"], ids["invoice2"]}
    hostile_domain = await store.search(scope, "invoice", domains=["billing' OR '1'='1"])
    assert hostile_domain == []
    cutoff = datetime(2025, 1, 1, tzinfo=timezone.utc)
    recent = await store.search(scope, "ACME invoice", since=cutoff)
    assert ids["invoice"] not in {h.segment_id for h in recent}
    older = await store.search(scope, "ACME invoice", until=cutoff)
    assert {h.segment_id for h in older} == {ids["invoice"]}
    assert older[0].created_at == datetime(2024, 1, 1, tzinfo=timezone.utc)
    window = await store.search(
        scope,
        "ACME",
        since=cutoff,
        until=datetime.now(timezone.utc) + timedelta(hours=1),
        mode="text",
    )
    assert {h.segment_id for h in window} == {ids["invoice2"]}


async def test_search_before_any_index_and_across_sessions(
    backend: OpenStore, scope: Scope
) -> None:
    store = await backend()
    other = Scope(tenant=scope.tenant, session="s2")
    for s in (scope, other):
        await store.create_scope(s)
    await store.append(*make_segment(scope, "kiwi smoothie recipe"))
    await store.append(*make_segment(other, "kiwi orchard in New Zealand"))
    # No maintain(): the full-text index is built on first use.
    hits = await store.search(scope, "kiwi")
    assert {h.session for h in hits} == {"s1"}
    wide = await store.search(scope, "kiwi", all_sessions=True)
    assert {h.session for h in wide} == {"s1", "s2"}


async def test_forget_removes_from_search_and_fetch(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    keep, keep_chunks = make_segment(scope, "keep the blue notebook")
    drop, drop_chunks = make_segment(scope, "forget the red passport number 1234")
    await store.append(keep, keep_chunks)
    await store.append(drop, drop_chunks)
    await store.maintain()
    assert any(h.segment_id == drop.id for h in await store.search(scope, "passport"))
    assert await store.forget_segment(scope, drop.id)
    assert not await store.forget_segment(scope, drop.id)
    for mode in ("hybrid", "vector", "text"):
        hits = await store.search(scope, "red passport number", mode=mode, limit=20)
        assert drop.id not in {h.segment_id for h in hits}
    stats = await store.stats(scope)
    assert stats.segments == 1 and stats.chunks == len(keep_chunks)
    assert await store.forget_session(scope) == 1
    assert not await store.has_scope(scope)
    assert (await store.stats()).chunks == 0
    # The scope can be registered again and starts empty, at seq 0.
    await store.create_scope(scope)
    assert (await store.append(*make_segment(scope, "fresh start"))).seq == 0


async def test_uncommitted_chunk_rows_are_never_returned(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    await store.append(*make_segment(scope, "committed ostrich fact", k=64))
    # Chunk rows without a segment row (a writer that died before its SQL commit).
    segment, chunks = make_segment(scope, "uncommitted ostrich rumour", k=64)
    await add_raw_chunk_rows(store, scope, segment, chunks, owner=scope)
    for mode in ("hybrid", "vector", "text"):
        hits = await store.search(scope, "ostrich", mode=mode, limit=20)
        assert hits and segment.id not in {h.segment_id for h in hits}
    assert len(await store.fetch(scope, [segment.id], strict=False)) == 0
