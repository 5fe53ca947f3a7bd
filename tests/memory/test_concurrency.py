"""Concurrent writers in one process, on both SQL backends."""

from __future__ import annotations

import asyncio

from refrag_agent.timeline import Scope

from .conftest import OpenStore, make_segment


async def test_concurrent_appends_keep_seq_dense(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    sessions = [Scope(tenant=scope.tenant, session=f"s{i}") for i in range(3)]
    for s in sessions:
        await store.create_scope(s)
    repeated = make_segment(sessions[0], "the same id appended by many writers at once")

    async def writer(w: int) -> list[str]:
        ids = []
        for i in range(3):
            target = sessions[(w + i) % len(sessions)]
            segment, chunks = make_segment(target, f"writer {w} segment {i}")
            await store.append(segment, chunks)
            ids.append(segment.id)
        # Everyone also appends one shared segment: stored once, replayed for the rest.
        await store.append(*repeated)
        return ids

    results = await asyncio.gather(*(writer(w) for w in range(50)))
    written = {i for ids in results for i in ids}
    assert len(written) == 150
    seen = []
    n_chunks = 0
    for s in sessions:
        timeline = await store.timeline(s)
        assert [seg.seq for seg in timeline] == list(range(len(timeline)))
        seen += [seg.id for seg in timeline]
        n_chunks += sum(seg.n_chunks for seg in timeline)
    assert len(seen) == len(set(seen)) == 151
    assert set(seen) == written | {repeated[0].id}
    stats = await store.stats()
    assert stats.pending_writes == 0
    assert stats.chunks == n_chunks
