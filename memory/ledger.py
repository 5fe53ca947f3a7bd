"""The pending-write ledger: a SQL row per write or forget in flight, and the sweep that
finishes those whose owner died.

A write records its pending row before any chunk row exists and removes it in the
transaction that commits the segment (``SegmentTable.commit``); a forget records its row
in the transaction that deletes the SQL rows and removes it once the chunk rows are gone.
A row whose owner is dead is taken over by :meth:`PendingLedger.sweep`, which deletes
that key's chunk rows and then the row.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from refrag_agent.errors import StoreError
from refrag_agent.logs import get_logger

from . import keys, sql
from .purge import Purger
from .records import AppendResult
from .segments import SegmentTable
from .state import StoreState

log = get_logger(__name__)

LEVEL_COLUMN = {"segment": "segment_key", "session": "session_key", "tenant": "tenant_key"}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PendingLedger:
    """Pending rows of this store's writes and forgets, and the orphan sweep."""

    def __init__(self, state: StoreState, segments: SegmentTable, purger: Purger) -> None:
        self.state = state
        self.segments = segments
        self.purger = purger

    def row(self, key: str, level: str) -> Any:
        """The insert of a pending row owned by this store (run it in a transaction)."""
        return insert(sql.pending).values(
            key=key, level=level, owner=self.state.owner, started_at=time.time()
        )

    async def claim(
        self, seg_key: str, content_digest: str, segment_id: str
    ) -> AppendResult | None:
        """Record the pending write; if another writer holds this id, wait for its result."""
        deadline = time.monotonic() + self.state.settings.busy_timeout_s
        while True:
            try:
                async with self.state.writing() as conn:
                    await conn.execute(self.row(seg_key, "segment"))
                # Committed after a racing writer's commit: the id may be stored by now.
                existing = await self.segments.existing(seg_key, content_digest, segment_id)
                if existing is not None:
                    # Nothing of ours is in LanceDB: release the pending row only.
                    await self.release(seg_key)
                return existing
            except IntegrityError:
                pass
            existing = await self.segments.existing(seg_key, content_digest, segment_id)
            if existing is not None:
                return existing
            await self.sweep(only=[seg_key])
            if time.monotonic() > deadline:
                raise StoreError("another writer holds this segment id", segment_id=segment_id)
            await asyncio.sleep(0.01)

    async def release(self, key: str) -> None:
        async with self.state.writing() as conn:
            await conn.execute(
                delete(sql.pending).where(
                    sql.pending.c.key == key, sql.pending.c.owner == self.state.owner
                )
            )

    async def abandon(self, seg_key: str) -> None:
        """Undo a write that will not commit: its chunk rows, then its pending row."""
        try:
            async with self.state.reading() as conn:
                mine = (
                    await conn.execute(
                        select(func.count())
                        .select_from(sql.pending)
                        .where(
                            sql.pending.c.key == seg_key, sql.pending.c.owner == self.state.owner
                        )
                    )
                ).scalar_one()
            # No pending row of ours means the segment committed (or was swept): keep rows.
            if mine:
                if not await self.segments.committed(seg_key):
                    await self.state.chunks.delete(keys.eq("segment_key", seg_key))
                await self.release(seg_key)
        except Exception as e:
            # The pending row stays; the next sweep finishes the job.
            log.warning("memory.abandon_failed", error=repr(e))

    def _abandoned(self, owner: str, started_at: float) -> bool:
        if owner == self.state.owner:
            return False
        if time.time() - started_at > self.state.settings.orphan_grace_s:
            return True
        host, _, rest = owner.partition("|")
        pid_text = rest.partition("|")[0]
        if host == self.state.host and pid_text.isdigit():
            return not _pid_alive(int(pid_text))
        return False

    async def sweep(self, *, only: Sequence[str] | None = None) -> int:
        """Finish writes and forgets whose owner died: delete their chunk rows."""
        query = select(
            sql.pending.c.key, sql.pending.c.level, sql.pending.c.owner, sql.pending.c.started_at
        )
        if only is not None:
            query = query.where(sql.pending.c.key.in_(list(only)))
        async with self.state.reading() as conn:
            rows = (await conn.execute(query)).all()
        swept = 0
        for key, level, owner, started_at in rows:
            if not self._abandoned(owner, started_at):
                continue
            # Take the row over first, so the dead writer can never commit after us.
            async with self.state.writing() as conn:
                claimed = await conn.execute(
                    update(sql.pending)
                    .where(sql.pending.c.key == key, sql.pending.c.owner == owner)
                    .values(owner=self.state.owner, started_at=time.time())
                )
            if claimed.rowcount != 1:
                continue
            # A writer that died after finding its id already stored wrote no rows: the
            # committed segment's rows under this key must stay. The fragments of the rows
            # deleted are recorded for the purge, as the dead forget would have done.
            if level != "segment" or not await self.segments.committed(key):
                await self.state.chunks.delete(
                    keys.eq(LEVEL_COLUMN[level], key), record=self.purger.record
                )
            await self.release(key)
            swept += 1
        if swept:
            log.info("memory.orphans_swept", count=swept)
        return swept
