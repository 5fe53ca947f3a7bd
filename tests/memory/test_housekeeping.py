"""SQLite settings, schema versions and migrations, background housekeeping, ANN index."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from refrag_agent.errors import StoreError
from refrag_agent.memory import HashEncoder, MemoryStore, StoreSettings
from refrag_agent.memory.store import SQLITE_FILE
from refrag_agent.timeline import Scope

from .conftest import QUIET, make_segment


async def test_sqlite_is_in_wal_mode_with_a_busy_timeout(tmp_path: Path, scope: Scope) -> None:
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET) as store:
        await store.create_scope(scope)
        async with store._state.engines.writer.connect() as conn:
            timeout = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
        assert timeout == int(QUIET.busy_timeout_s * 1000)
    with sqlite3.connect(tmp_path / SQLITE_FILE) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM refrag_schema_version").fetchone()[0] == 2


async def test_migration_from_schema_version_1(tmp_path: Path, scope: Scope) -> None:
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET) as store:
        await store.create_scope(scope)
        await store.append(*make_segment(scope, "written before the downgrade"))
    # Turn the file into what schema version 1 looked like.
    with sqlite3.connect(tmp_path / SQLITE_FILE) as db:
        db.execute("DROP INDEX ix_refrag_segments_session_created")
        db.execute("UPDATE refrag_schema_version SET version = 1")
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET) as store:
        assert store.schema_version == 2
        assert [s.text for s in await store.timeline(scope)] == ["written before the downgrade"]
    with sqlite3.connect(tmp_path / SQLITE_FILE) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "ix_refrag_segments_session_created" in names
        assert db.execute("SELECT version FROM refrag_schema_version").fetchone()[0] == 2


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET):
        pass
    with sqlite3.connect(tmp_path / SQLITE_FILE) as db:
        db.execute("UPDATE refrag_schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer"):
        await MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET)


async def test_housekeeping_runs_in_the_background_not_per_write(
    tmp_path: Path, scope: Scope
) -> None:
    lazy = StoreSettings(maintenance_interval_s=3600, maintenance_after_rows=10_000)
    async with MemoryStore.open(tmp_path / "lazy", encoder=HashEncoder(32), settings=lazy) as s:
        await s.create_scope(scope)
        for i in range(20):
            await s.append(*make_segment(scope, f"segment {i} with a few words"))
        await asyncio.sleep(0.2)
        assert s._housekeeper.rounds == 0
        assert await s._state.chunks._table.list_indices() == []

    eager = StoreSettings(maintenance_interval_s=3600, maintenance_after_rows=20)
    async with MemoryStore.open(tmp_path / "eager", encoder=HashEncoder(32), settings=eager) as s:
        await s.create_scope(scope)
        version_before = None
        for i in range(20):
            await s.append(*make_segment(scope, f"segment {i} with a few words"))
            if i == 0:
                version_before = await s._state.chunks.version()
        for _ in range(100):
            if s._housekeeper.rounds:
                break
            await asyncio.sleep(0.1)
        assert s._housekeeper.rounds >= 1
        indexed = {ix.columns[0] for ix in await s._state.chunks._table.list_indices()}
        assert {"segment_key", "text"} <= indexed
        assert version_before is not None and await s._state.chunks.version() > version_before
        assert len(await s.fetch(scope, [seg.id for seg in await s.timeline(scope)])) > 0


async def test_housekeeping_after_a_number_of_commits(tmp_path: Path, scope: Scope) -> None:
    # Few rows, no interval: the LanceDB commits (versions, fragments) alone start a round.
    settings = StoreSettings(
        maintenance_interval_s=3600, maintenance_after_rows=10_000, maintenance_after_versions=5
    )
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=settings) as s:
        await s.create_scope(scope)
        for i in range(4):
            await s.append(*make_segment(scope, f"segment {i}"))
        await asyncio.sleep(0.2)
        assert s._housekeeper.rounds == 0
        await s.append(*make_segment(scope, "the fifth commit"))
        for _ in range(100):
            if s._housekeeper.rounds:
                break
            await asyncio.sleep(0.1)
        assert s._housekeeper.rounds == 1


async def test_ann_index_once_the_table_is_large_enough(tmp_path: Path, scope: Scope) -> None:
    settings = StoreSettings(maintenance_interval_s=None, ann_min_rows=256)
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=settings) as store:
        await store.create_scope(scope)
        rng = np.random.default_rng(0)
        report = await store.maintain()
        assert "vector" not in report.indexes_created
        for i in range(40):
            segment, chunks = make_segment(scope, f"row {i}: " + "lorem ipsum " * 10)
            vectors = rng.standard_normal((len(chunks), 32)).astype(np.float32)
            await store.append(segment, chunks, embeddings=vectors)
        report = await store.maintain()
        assert "vector" in report.indexes_created
        hits = await store.search(scope, "row 7 lorem", limit=5)
        assert len(hits) == 5


async def test_housekeeper_stops_even_when_woken_at_the_same_moment() -> None:
    from refrag_agent.memory.housekeeping import Housekeeper

    calls = 0

    async def maintain() -> None:
        nonlocal calls
        calls += 1

    for _ in range(20):
        keeper = Housekeeper(maintain, interval_s=3600, after_rows=1, after_versions=100)
        keeper.start()
        await asyncio.sleep(0)
        keeper.committed(5)  # wake-up and cancel race
        await asyncio.wait_for(keeper.stop(), timeout=5)


async def test_rounds_that_writes_start_rest_after_a_long_round() -> None:
    from refrag_agent.memory.housekeeping import REST_FACTOR, Housekeeper

    loop = asyncio.get_running_loop()
    rounds: list[tuple[float, float]] = []

    async def maintain() -> None:
        started = loop.time()
        await asyncio.sleep(0.1)  # a round as long as the table is large
        rounds.append((started, loop.time()))

    keeper = Housekeeper(maintain, interval_s=3600, after_rows=10_000, after_versions=1)
    keeper.start()
    try:
        while len(rounds) < 3:
            keeper.committed(1)  # every commit crosses the threshold
            await asyncio.sleep(0.01)
        # Each round started no sooner than REST_FACTOR times the last one's length after it.
        for (start, end), (next_start, _) in itertools.pairwise(rounds):
            assert next_start - end >= REST_FACTOR * (end - start) - 0.01
        # A wake (a forget's) does not wait for the rest.
        woken_at = loop.time()
        keeper.wake()
        while len(rounds) < 4:
            await asyncio.sleep(0.01)
        assert rounds[3][0] - woken_at < REST_FACTOR * 0.1
    finally:
        await keeper.stop()
