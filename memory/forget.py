"""Forgetting a segment, a session or a tenant: SQL rows first, then chunk rows.

A pending row covers the gap, so a crash half-way is finished by the next sweep. A purge
row, written with the SQL deletes, makes the next ``maintain`` erase the bytes the forget
left in the files (see purge.py)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from refrag_agent.errors import StoreError
from refrag_agent.logs import get_logger
from refrag_agent.timeline import Scope

from . import keys, sql
from .ledger import LEVEL_COLUMN, PendingLedger
from .purge import Purger
from .segments import SegmentTable
from .state import StoreState
from .validation import check_tenant, check_text

log = get_logger(__name__)


class Forgetter:
    """Forgets: SQL rows and a pending row in one transaction, then the chunk rows."""

    def __init__(
        self, state: StoreState, segments: SegmentTable, ledger: PendingLedger, purger: Purger
    ) -> None:
        self.state = state
        self.segments = segments
        self.ledger = ledger
        self.purger = purger

    async def forget_segment(self, scope: Scope, segment_id: str) -> bool:
        """Delete one segment and its chunks; False if it was not stored."""
        check_text(segment_id, "segment_id")
        session_id = await self.segments.session_id(scope)
        seg_key = keys.segment_key(scope, segment_id)
        try:
            async with self.state.writing() as conn:
                gone = await conn.execute(
                    delete(sql.segments).where(
                        sql.segments.c.segment_key == seg_key,
                        sql.segments.c.session_id == session_id,
                    )
                )
                if gone.rowcount == 0:
                    return False
                await conn.execute(self.ledger.row(seg_key, "segment"))
                await conn.execute(self.purger.row())
        except IntegrityError as e:
            raise StoreError("a write of this segment is in flight; retry") from e
        await self._finish(seg_key, "segment")
        return True

    async def forget_session(self, scope: Scope) -> int:
        """Delete a session with all its segments and chunks; return how many segments."""
        session_id = await self.segments.session_id(scope)
        skey = keys.session_key(scope)
        try:
            async with self.state.writing() as conn:
                await conn.execute(self.ledger.row(skey, "session"))
                await conn.execute(self.purger.row())
                gone = await conn.execute(
                    delete(sql.segments).where(sql.segments.c.session_id == session_id)
                )
                await conn.execute(delete(sql.sessions).where(sql.sessions.c.id == session_id))
                count = int(gone.rowcount)
        except IntegrityError as e:
            raise StoreError("a forget of this session is already in flight") from e
        await self._finish(skey, "session")
        return count

    async def forget_tenant(self, tenant: str) -> int:
        """Delete a tenant with all its sessions; return how many segments."""
        check_tenant(tenant)
        tenant_id = await self.segments.tenant_id(tenant)
        tkey = keys.tenant_key(tenant)
        session_ids = select(sql.sessions.c.id).where(sql.sessions.c.tenant_id == tenant_id)
        try:
            async with self.state.writing() as conn:
                await conn.execute(self.ledger.row(tkey, "tenant"))
                await conn.execute(self.purger.row())
                gone = await conn.execute(
                    delete(sql.segments).where(sql.segments.c.session_id.in_(session_ids))
                )
                await conn.execute(
                    delete(sql.sessions).where(sql.sessions.c.tenant_id == tenant_id)
                )
                await conn.execute(delete(sql.tenants).where(sql.tenants.c.id == tenant_id))
                count = int(gone.rowcount)
        except IntegrityError as e:
            raise StoreError("a forget of this tenant is already in flight") from e
        await self._finish(tkey, "tenant")
        return count

    async def _finish(self, key: str, level: str) -> None:
        await self.state.chunks.delete(keys.eq(LEVEL_COLUMN[level], key), record=self.purger.record)
        await self.ledger.release(key)
        # Cached embeddings are keyed by tenant; drop them all rather than track owners.
        self.state.cache.clear()
        log.info("memory.forgotten", level=level)
