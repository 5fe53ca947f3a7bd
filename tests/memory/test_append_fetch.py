from __future__ import annotations

import numpy as np
import pytest
import torch

from refrag_agent.errors import InvalidInput
from refrag_agent.memory import HashEncoder
from refrag_agent.timeline import Scope, SegmentKind

from .conftest import OpenStore, make_segment

TEXTS = [
    "The user asks about invoice 42 and its due date.",
    "The assistant answers that invoice 42 is due on Friday.",
    "A tool returned the balance: 1,337.00 EUR.",
    "ünïcødé text 租户 with emoji 🧠 and more words to fill two chunks",
]


async def test_append_then_fetch_in_timeline_order(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    stored = []
    for i, text in enumerate(TEXTS):
        segment, chunks = make_segment(scope, text, kind=list(SegmentKind)[i])
        result = await store.append(segment, chunks)
        assert result.seq == i and result.created and result.n_chunks == len(chunks)
        assert result.n_tokens == sum(c.n_tokens for c in chunks)
        stored.append((segment, chunks))
    # Ask in a shuffled order: the batch comes back in (seq, chunk index) order.
    wanted = [stored[2][0].id, stored[0][0].id, stored[3][0].id]
    batch = await store.fetch(scope, wanted)
    expected = [(s, c) for s, cs in (stored[0], stored[2], stored[3]) for c in cs]
    assert len(batch) == len(expected)
    assert batch.segment_ids == [s.id for s, _ in expected]
    assert batch.token_ids == [list(c.token_ids) for _, c in expected]
    assert batch.texts == [c.text for _, c in expected]
    assert batch.seq.tolist() == sorted(batch.seq.tolist())
    assert batch.embeddings.dtype == np.float32 and batch.embeddings.shape == (len(expected), 32)
    reference = store.encoder.encode([c.text for _, c in expected]).numpy()
    np.testing.assert_allclose(batch.embeddings, reference, rtol=0, atol=1e-6)
    assert batch.embeddings_tensor().dtype == torch.float32
    timeline = await store.timeline(scope)
    assert [s.seq for s in timeline] == [0, 1, 2, 3]
    assert [s.text for s in timeline] == TEXTS
    assert timeline[2].n_chunks == len(stored[2][1])


async def test_append_is_idempotent_per_segment_id(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    segment, chunks = make_segment(scope, "hello there, general kenobi")
    first = await store.append(segment, chunks)
    again = await store.append(segment, chunks)
    assert not again.created and again.seq == first.seq
    stats = await store.stats()
    assert stats.segments == 1 and stats.chunks == len(chunks)
    other, other_chunks = make_segment(scope, "different content", id=segment.id)
    with pytest.raises(InvalidInput, match="different content"):
        await store.append(other, other_chunks)


async def test_embedding_computed_once_per_hash_and_fingerprint(
    backend: OpenStore, scope: Scope
) -> None:
    encoder = HashEncoder(32)
    store = await backend(encoder=encoder)
    await store.create_scope(scope)
    text = "repeat me " * 8  # chunks of 16 bytes repeat inside the segment too
    first = await store.append(*make_segment(scope, text))
    distinct = len({c.text for c in make_segment(scope, text)[1]})
    assert first.n_encoded == first.n_chunks and encoder.texts_encoded == distinct
    second = await store.append(*make_segment(scope, text))
    assert second.n_reused == second.n_chunks and second.n_encoded == 0
    assert encoder.texts_encoded == distinct
    # A fresh process (empty in-memory cache) reuses the rows in LanceDB.
    store._state.cache.clear()
    third = await store.append(*make_segment(scope, text))
    assert third.n_reused == third.n_chunks and encoder.texts_encoded == distinct


async def test_precomputed_embeddings_skip_the_encoder(backend: OpenStore, scope: Scope) -> None:
    encoder = HashEncoder(32)
    store = await backend(encoder=encoder)
    await store.create_scope(scope)
    segment, chunks = make_segment(scope, "precomputed vectors for this text")
    given = torch.randn(len(chunks), 32)
    result = await store.append(segment, chunks, embeddings=given)
    assert result.n_encoded == 0 and encoder.calls == 0
    batch = await store.fetch(scope, [segment.id])
    np.testing.assert_array_equal(batch.embeddings, given.numpy())


async def test_fetch_rejects_ids_outside_the_scope(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    segment, chunks = make_segment(scope, "mine")
    await store.append(segment, chunks)
    with pytest.raises(InvalidInput, match="not found"):
        await store.fetch(scope, [segment.id, "nope"])
    batch = await store.fetch(scope, [segment.id, "nope"], strict=False)
    assert batch.segment_ids == [segment.id] * len(chunks)
    assert len(await store.fetch(scope, [], strict=False)) == 0
    with pytest.raises(InvalidInput, match="not found"):
        await store.fetch(Scope(tenant=scope.tenant, session="other"), [segment.id])


async def test_timeline_filters(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    kinds = [SegmentKind.USER, SegmentKind.ASSISTANT, SegmentKind.TOOL_OUTPUT, SegmentKind.USER]
    segments = []
    for i, kind in enumerate(kinds):
        domain = "billing" if i % 2 else "chat"
        segment, chunks = make_segment(scope, f"segment number {i}", kind=kind, domain=domain)
        await store.append(segment, chunks)
        segments.append(segment)
    assert [s.seq for s in await store.timeline(scope, start=1, stop=3)] == [1, 2]
    users = await store.timeline(scope, kinds=[SegmentKind.USER])
    assert [s.seq for s in users] == [0, 3]
    assert [s.seq for s in await store.timeline(scope, domains=["billing"])] == [1, 3]
    since = segments[2].created_at
    assert [s.seq for s in await store.timeline(scope, since=since)] == [2, 3]
    assert [s.seq for s in await store.timeline(scope, until=since)] == [0, 1]
    newest = await store.timeline(scope, newest_first=True, limit=2)
    assert [s.seq for s in newest] == [3, 2]
    got = await store.get_segment(scope, segments[1].id)
    assert got is not None and got.domain == "billing" and got.kind is SegmentKind.ASSISTANT
    assert got.created_at == segments[1].created_at


async def test_persistence_across_reopen(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    segment, chunks = make_segment(scope, "remember this across restarts, please")
    await store.append(segment, chunks)
    before = await store.fetch(scope, [segment.id])
    await store.aclose()
    reopened = await backend()
    assert await reopened.has_scope(scope)
    after = await reopened.fetch(scope, [segment.id])
    assert after.token_ids == before.token_ids
    np.testing.assert_array_equal(after.embeddings, before.embeddings)
    nxt = await reopened.append(*make_segment(scope, "and this"))
    assert nxt.seq == 1
    hits = await reopened.search(scope, "restarts", limit=3)
    assert hits and hits[0].segment_id == segment.id


async def test_append_many_bulk(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    other = Scope(tenant=scope.tenant, session="s2")
    for s in (scope, other):
        await store.create_scope(s)
    first = await store.append(*make_segment(scope, "already there"))
    items = []
    for i in range(10):
        segment, chunks = make_segment(scope if i % 2 else other, f"bulk segment {i}")
        vectors = np.full((len(chunks), 32), i, dtype=np.float32) if i % 3 == 0 else None
        items.append((segment, chunks, vectors))
    already, already_chunks = make_segment(scope, "already there", id=first.segment_id)
    items.append((already, already_chunks, None))
    results = await store.append_many(items)
    assert [r.segment_id for r in results] == [seg.id for seg, _, _ in items]
    assert not results[-1].created and results[-1].seq == 0
    assert [s.seq for s in await store.timeline(scope)] == list(range(6))
    assert [s.seq for s in await store.timeline(other)] == list(range(5))
    batch = await store.fetch(other, [items[0][0].id])
    assert (batch.embeddings == 0).all()
    bad, bad_chunks = make_segment(scope, "fine")
    with pytest.raises(InvalidInput):
        await store.append_many([(bad, bad_chunks, None), (bad, bad_chunks, None)])
    assert (await store.stats()).segments == 11
