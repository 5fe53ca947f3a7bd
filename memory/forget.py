"""Forgetting a segment, a session or a tenant: SQL rows first, then chunk rows.

A pending row covers the gap, so a crash half-way is finished by the next sweep."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from refrag_agent.errors import StoreError
from refrag_agent.logs import get_logger
from refrag_agent.timeline import Scope

from . import keys, sql
from .core import _LEVEL_COLUMN, StoreCore
from .validation import check_tenant, check_text

log = get_logger(__name__)


class ForgetMixin(StoreCore):
    async def forget_segment(self, scope: Scope, segment_id: str) -> bool:
        """Delete one segment and its chunks; False if it was not stored."""
        self._check_open()
        check_text(segment_id, "segment_id")
        session_id = await self._session_id(scope)
        seg_key = keys.segment_key(scope, segment_id)
        try:
            async with self._writing() as conn:
                gone = await conn.execute(
                    delete(sql.segments).where(
                        sql.segments.c.segment_key == seg_key,
                        sql.segments.c.session_id == session_id,
                    )
                )
                if gone.rowcount == 0:
                    return False
                await conn.execute(self._pending_row(seg_key, "segment"))
        except IntegrityError as e:
            raise StoreError("a write of this segment is in flight; retry") from e
        await self._finish_forget(seg_key, "segment")
        return True

    async def forget_session(self, scope: Scope) -> int:
        """Delete a session with all its segments and chunks; return how many segments."""
        self._check_open()
        session_id = await self._session_id(scope)
        skey = keys.session_key(scope)
        try:
            async with self._writing() as conn:
                await conn.execute(self._pending_row(skey, "session"))
                gone = await conn.execute(
                    delete(sql.segments).where(sql.segments.c.session_id == session_id)
                )
                await conn.execute(delete(sql.sessions).where(sql.sessions.c.id == session_id))
                count = int(gone.rowcount)
        except IntegrityError as e:
            raise StoreError("a forget of this session is already in flight") from e
        await self._finish_forget(skey, "session")
        return count

    async def forget_tenant(self, tenant: str) -> int:
        """Delete a tenant with all its sessions; return how many segments."""
        self._check_open()
        check_tenant(tenant)
        tenant_id = await self._tenant_id(tenant)
        tkey = keys.tenant_key(tenant)
        session_ids = select(sql.sessions.c.id).where(sql.sessions.c.tenant_id == tenant_id)
        try:
            async with self._writing() as conn:
                await conn.execute(self._pending_row(tkey, "tenant"))
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
        await self._finish_forget(tkey, "tenant")
        return count

    def _pending_row(self, key: str, level: str) -> Any:
        return insert(sql.pending).values(
            key=key, level=level, owner=self._owner, started_at=time.time()
        )

    async def _finish_forget(self, key: str, level: str) -> None:
        await self._chunks.delete(keys.eq(_LEVEL_COLUMN[level], key))
        async with self._writing() as conn:
            await conn.execute(
                delete(sql.pending).where(
                    sql.pending.c.key == key, sql.pending.c.owner == self._owner
                )
            )
        # Cached embeddings are keyed by tenant; drop them all rather than track owners.
        self._cache.clear()
        log.info("memory.forgotten", level=level)

    async def _finish_forgets(self, forget_keys: Sequence[str]) -> None:
        await self.sweep_orphans(only=forget_keys)
