"""Forget means gone: no read returns forgotten data once ``forget_*`` returns, and no file
of the store holds its bytes once the next ``maintain()`` returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from refrag_agent.memory import HashEncoder, MemoryStore, StoreSettings
from refrag_agent.timeline import Scope

from .conftest import QUIET, OpenStore, make_segment

SECRET = "zq-7731-marmalade-xylophone"
TENANT = "tenant-8841-quince"


def files_holding(folder: Path, needle: str) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``needle`` (UTF-8)."""
    data = needle.encode()
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and data in path.read_bytes()
    )


async def _fill(store: MemoryStore, gone: Scope, kept: Scope) -> list[str]:
    """Segments of both tenants, some compacted into shared fragments and some not yet;
    the secret is in the gone tenant's text. Returns the gone tenant's segment ids."""
    ids = []
    for scope in (gone, kept):
        await store.create_scope(scope)
    for i in range(12):
        if i == 6:  # what came before now lies in compacted fragments next to kept rows
            await store.maintain()
        for scope in (gone, kept):
            text = f"turn {i} about invoices and {SECRET if scope is gone else 'nothing'}"
            segment, chunks = make_segment(scope, text, k=8)
            await store.append(segment, chunks)
            if scope is gone:
                ids.append(segment.id)
    return ids


async def _reads_see_nothing(store: MemoryStore, gone: Scope) -> None:
    assert await store.timeline(gone) == []
    assert await store.search(gone, SECRET) == []
    assert await store.search(gone, "invoices", all_sessions=True) == []
    assert len(await store.fetch(gone, ["anything"], strict=False)) == 0


async def _kept_is_whole(store: MemoryStore, kept: Scope) -> None:
    timeline = await store.timeline(kept)
    assert len(timeline) == 12
    batch = await store.fetch(kept, [s.id for s in timeline])
    assert len(batch) == sum(s.n_chunks for s in timeline)
    assert await store.search(kept, "invoices", limit=3)


@pytest.mark.parametrize("level", ["tenant", "session", "segment"])
async def test_forgotten_text_is_in_no_file_after_maintain(tmp_path: Path, level: str) -> None:
    folder = tmp_path / "store"
    gone, kept = Scope(tenant=TENANT, session="s1"), Scope(tenant="kept", session="s1")
    async with MemoryStore.open(folder, encoder=HashEncoder(32), settings=QUIET) as store:
        ids = await _fill(store, gone, kept)
        assert files_holding(folder, SECRET)
        if level == "tenant":
            assert await store.forget_tenant(TENANT) == 12
            assert await store.list_sessions(TENANT) == []
        elif level == "session":
            assert await store.forget_session(gone) == 12
        else:
            for segment_id in ids:
                assert await store.forget_segment(gone, segment_id)
        await _reads_see_nothing(store, gone)
        assert files_holding(folder, SECRET)  # deleted, not yet erased

        report = await store.maintain()

        assert report.purged and report.rows_rewritten > 0
        assert files_holding(folder, SECRET) == []
        if level == "tenant":
            assert files_holding(folder, TENANT) == []
        await _reads_see_nothing(store, gone)
        await _kept_is_whole(store, kept)
        assert not (await store.maintain()).purged  # nothing owed any more


async def test_a_purge_owed_survives_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    gone, kept = Scope(tenant=TENANT, session="s1"), Scope(tenant="kept", session="s1")
    async with MemoryStore.open(folder, encoder=HashEncoder(32), settings=QUIET) as store:
        await _fill(store, gone, kept)
        await store.forget_tenant(TENANT)
    assert files_holding(folder, SECRET)
    async with MemoryStore.open(folder, encoder=HashEncoder(32), settings=QUIET) as store:
        assert (await store.maintain()).purged
        await _kept_is_whole(store, kept)
    assert files_holding(folder, SECRET) == []


async def test_background_housekeeping_purges_after_a_forget(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    gone, kept = Scope(tenant=TENANT, session="s1"), Scope(tenant="kept", session="s1")
    settings = StoreSettings(maintenance_interval_s=3600)
    async with MemoryStore.open(folder, encoder=HashEncoder(32), settings=settings) as store:
        await _fill(store, gone, kept)
        rounds = store._housekeeper.rounds
        await store.forget_tenant(TENANT)
        # The forget wakes the housekeeper (no interval is waited); its round runs at a low
        # priority in a child process, slow on busy cores.
        for _ in range(1200):
            if store._housekeeper.rounds > rounds and not await store._purger.owed():
                break
            await asyncio.sleep(0.05)
        assert files_holding(folder, SECRET) == []
        await _kept_is_whole(store, kept)


async def test_rows_moved_by_a_compaction_during_the_forget_are_erased_too(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "store"
    gone, kept = Scope(tenant=TENANT, session="s1"), Scope(tenant="kept", session="s1")
    async with MemoryStore.open(folder, encoder=HashEncoder(32), settings=QUIET) as store:
        await _fill(store, gone, kept)
        table = store._state.chunks
        find = table._fragments
        compacted = False

        async def find_then_compact(where: str) -> set[int]:
            # Another process compacts between the lookup and the delete: every row moves.
            nonlocal compacted
            fragments = await find(where)
            if not compacted:
                compacted = True
                await table.rewrite_fragments(await find("true"))
            return fragments

        table._fragments = find_then_compact  # type: ignore[method-assign]
        await store.forget_tenant(TENANT)
        assert compacted
        await _reads_see_nothing(store, gone)
        assert (await store.maintain()).purged
        assert files_holding(folder, SECRET) == []
        await _kept_is_whole(store, kept)


async def test_forget_and_purge_on_each_backend(backend: OpenStore, tmp_path: Path) -> None:
    store: MemoryStore = await backend()
    gone, kept = Scope(tenant=TENANT, session="s1"), Scope(tenant="kept", session="s1")
    await _fill(store, gone, kept)
    assert files_holding(tmp_path, SECRET)
    await store.forget_tenant(TENANT)
    await _reads_see_nothing(store, gone)
    assert (await store.maintain()).purged
    # The LanceDB folder, and on SQLite the timeline file, hold no byte of it.
    assert files_holding(tmp_path, SECRET) == []
    await _kept_is_whole(store, kept)
