"""Reads while a housekeeping round compacts and drops old LanceDB versions (issue 14).

A round's optimize compacts fragments into new ones and then removes the files that only
older versions use (at once after a forget). A search that started on such a version
read a data file that was gone ("full-text search failed", "Not found: ...lance").
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from refrag_agent.errors import StoreError
from refrag_agent.memory import HashEncoder, MemoryStore
from refrag_agent.memory.compactor import Compactor
from refrag_agent.timeline import Scope

from .conftest import QUIET, make_segment

WORDS = [f"w{i}x" for i in range(3000)]


def _text(rng: random.Random, n: int = 60) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


async def test_searches_never_fail_while_rounds_compact_and_purge(
    tmp_path: Path, scope: Scope
) -> None:
    rng = random.Random(0)
    async with MemoryStore.open(tmp_path / "store", encoder=HashEncoder(32), settings=QUIET) as s:
        await s.create_scope(scope)
        ids = []
        for _ in range(300):  # enough rows that a search reads several data files
            segment, chunk_list = make_segment(scope, _text(rng))
            await s.append(segment, chunk_list)
            ids.append(segment.id)
        await s.maintain()
        stop = asyncio.Event()
        failures: list[str] = []

        async def searcher(seed: int) -> int:
            local = random.Random(seed)
            n = 0
            while not stop.is_set():
                query = " ".join(local.choice(WORDS) for _ in range(3))
                try:
                    await s.search(scope, query, limit=5)
                except StoreError as e:
                    failures.append(f"{e!r} from {e.__cause__!r}")
                n += 1
                await asyncio.sleep(0)
            return n

        async def churn() -> None:
            # Appends, deletes, and the purge round each delete owes, back to back.
            try:
                for _ in range(5):
                    for _ in range(5):
                        segment, chunk_list = make_segment(scope, _text(rng))
                        await s.append(segment, chunk_list)
                        ids.append(segment.id)
                    await s.forget_segment(scope, ids.pop(0))
                    assert (await s.maintain()).purged
            finally:
                stop.set()

        *searches, _ = await asyncio.gather(*(searcher(i) for i in range(6)), churn())
        assert min(searches) > 0
        assert failures == []


class _PrunedOnce:
    """The LanceDB table as a read sees it once cleanup removed its version's files: the
    first query fails as LanceDB's does, later ones read the table."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.failures = 0

    def query(self) -> Any:
        if self.failures == 0:
            self.failures += 1
            raise RuntimeError("lance error: Not found: chunks.lance/data/gone.lance")
        return self._table.query()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


async def test_a_read_that_meets_a_prune_runs_again_on_the_newest_version(
    tmp_path: Path, scope: Scope, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with MemoryStore.open(tmp_path / "store", encoder=HashEncoder(32), settings=QUIET) as s:
        await s.create_scope(scope)
        await s.append(*make_segment(scope, "the parcel went to Oslo on Tuesday"))
        await s.maintain()
        table = s._state.chunks
        assert table._compactor is not None
        while not await table._compactor.ready():  # the first round started it
            await asyncio.sleep(0.01)
        optimize = Compactor.optimize
        seen: list[int] = []

        async def search_while_optimizing(self: Compactor, **kwargs: Any) -> dict[str, Any]:
            stats = await optimize(self, **kwargs)
            pruned = _PrunedOnce(table._table)
            table._table = pruned  # the round has dropped old versions, not yet reopened
            hits = await s.search(scope, "parcel Oslo", mode="text")
            seen.extend([bool(hits), pruned.failures])
            return stats

        monkeypatch.setattr(Compactor, "optimize", search_while_optimizing)
        await s.maintain()
        assert seen == [True, 1]


async def test_a_read_that_fails_outside_a_round_is_not_retried(
    tmp_path: Path, scope: Scope
) -> None:
    async with MemoryStore.open(tmp_path / "store", encoder=HashEncoder(32), settings=QUIET) as s:
        await s.create_scope(scope)
        await s.append(*make_segment(scope, "the parcel went to Oslo on Tuesday"))
        await s.maintain()
        table = s._state.chunks
        pruned = _PrunedOnce(table._table)
        table._table = pruned
        with pytest.raises(StoreError, match="full-text search failed"):
            await s.search(scope, "parcel Oslo", mode="text")
        assert pruned.failures == 1
