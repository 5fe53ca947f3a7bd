"""The SQL timeline: tenants, sessions and segment rows, and the commit that makes a
segment visible (:meth:`SegmentTable.commit`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from refrag_agent.errors import InvalidInput, ScopeError, StoreError
from refrag_agent.timeline import Chunk, Scope, Segment, SegmentKind

from . import keys, sql
from .records import AppendResult
from .state import StoreState, in_batches
from .validation import check_tenant, check_text


def digest(segment: Segment, chunks: Sequence[Chunk]) -> str:
    """What makes a segment id's content: a replayed append must carry the same."""
    payload = json.dumps(
        [
            segment.kind.value,
            segment.domain,
            segment.text,
            [[c.content_hash, list(c.token_ids)] for c in chunks],
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def segment_row(
    segment: Segment,
    session_id: int,
    seg_key: str,
    content_digest: str,
    *,
    seq: int,
    n_tokens: int,
    n_chunks: int,
) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "segment_key": seg_key,
        "segment_id": segment.id,
        "seq": seq,
        "kind": segment.kind.value,
        "domain": segment.domain,
        "domain_key": keys.domain_key(segment.domain),
        "source": segment.source,
        "created_at": segment.created_at,
        "n_tokens": n_tokens,
        "n_chunks": n_chunks,
        "text": segment.text,
        "meta": segment.metadata,
        "digest": content_digest,
    }


class SegmentTable:
    """Scopes and segments in SQL. Reads of a scope never created see it empty."""

    def __init__(self, state: StoreState) -> None:
        self.state = state

    # -- scopes ---------------------------------------------------------------------------

    async def find_session(self, scope: Scope) -> int | None:
        """The session's row id; None for a scope never created."""
        async with self.state.reading() as conn:
            row = (
                await conn.execute(
                    select(sql.sessions.c.id).where(sql.sessions.c.key == keys.session_key(scope))
                )
            ).scalar_one_or_none()
        return None if row is None else int(row)

    async def session_id(self, scope: Scope) -> int:
        """The session's row id, for writes: an unknown scope is a ``ScopeError``."""
        session_id = await self.find_session(scope)
        if session_id is None:
            raise ScopeError(
                "unknown scope: create it with create_scope() first",
                tenant=scope.tenant[:64],
                session=scope.session[:64],
            )
        return session_id

    async def find_tenant(self, tenant: str) -> int | None:
        async with self.state.reading() as conn:
            row = (
                await conn.execute(
                    select(sql.tenants.c.id).where(sql.tenants.c.key == keys.tenant_key(tenant))
                )
            ).scalar_one_or_none()
        return None if row is None else int(row)

    async def tenant_id(self, tenant: str) -> int:
        tenant_id = await self.find_tenant(tenant)
        if tenant_id is None:
            raise ScopeError("unknown tenant", tenant=tenant[:64])
        return tenant_id

    async def create_scope(self, scope: Scope) -> bool:
        """Register a tenant/session; True if it was new."""
        tkey, skey = keys.tenant_key(scope.tenant), keys.session_key(scope)
        now = datetime.now(timezone.utc)
        for _attempt in range(3):
            try:
                async with self.state.writing() as conn:
                    in_flight = (
                        await conn.execute(
                            select(func.count())
                            .select_from(sql.pending)
                            .where(sql.pending.c.key.in_([tkey, skey]))
                        )
                    ).scalar_one()
                    if in_flight:
                        raise StoreError("a forget of this scope is in progress; retry later")
                    tenant_id = (
                        await conn.execute(
                            select(sql.tenants.c.id).where(sql.tenants.c.key == tkey)
                        )
                    ).scalar_one_or_none()
                    if tenant_id is None:
                        tenant_id = (
                            await conn.execute(
                                insert(sql.tenants)
                                .values(key=tkey, name=scope.tenant, created_at=now)
                                .returning(sql.tenants.c.id)
                            )
                        ).scalar_one()
                    exists = (
                        await conn.execute(
                            select(sql.sessions.c.id).where(sql.sessions.c.key == skey)
                        )
                    ).scalar_one_or_none()
                    if exists is not None:
                        return False
                    await conn.execute(
                        insert(sql.sessions).values(
                            tenant_id=tenant_id,
                            key=skey,
                            name=scope.session,
                            next_seq=0,
                            created_at=now,
                        )
                    )
                    return True
            except IntegrityError:
                # Another process registered it at the same moment (PostgreSQL); look again.
                continue
        return False

    async def list_sessions(self, tenant: str) -> list[str]:
        """Session names of one tenant, oldest first; none for an unknown tenant."""
        check_tenant(tenant)
        tenant_id = await self.find_tenant(tenant)
        if tenant_id is None:
            return []
        async with self.state.reading() as conn:
            rows = await conn.execute(
                select(sql.sessions.c.name)
                .where(sql.sessions.c.tenant_id == tenant_id)
                .order_by(sql.sessions.c.id)
            )
            return [str(name) for (name,) in rows]

    # -- segment rows ---------------------------------------------------------------------

    async def existing(
        self, seg_key: str, content_digest: str, segment_id: str
    ) -> AppendResult | None:
        """The stored result of an id already written; its content must be the same."""
        async with self.state.reading() as conn:
            row = (
                await conn.execute(
                    select(
                        sql.segments.c.seq,
                        sql.segments.c.digest,
                        sql.segments.c.n_chunks,
                        sql.segments.c.n_tokens,
                    ).where(sql.segments.c.segment_key == seg_key)
                )
            ).one_or_none()
        if row is None:
            return None
        if row.digest != content_digest:
            raise InvalidInput(
                "segment id already stored with different content", segment_id=segment_id[:64]
            )
        return AppendResult(
            segment_id=segment_id,
            seq=row.seq,
            n_chunks=row.n_chunks,
            n_tokens=row.n_tokens,
            n_reused=0,
            n_encoded=0,
            created=False,
        )

    async def committed(self, seg_key: str) -> bool:
        async with self.state.reading() as conn:
            found = (
                await conn.execute(
                    select(sql.segments.c.id).where(sql.segments.c.segment_key == seg_key)
                )
            ).scalar_one_or_none()
        return found is not None

    async def commit(
        self,
        segment: Segment,
        session_id: int,
        seg_key: str,
        content_digest: str,
        *,
        n_tokens: int,
        n_chunks: int,
    ) -> int:
        """Make a segment visible: in one transaction take our pending row, the session's
        next ``seq`` and insert the segment row. Returns the ``seq``."""
        state = self.state
        async with state.writing() as conn:
            taken = await conn.execute(
                delete(sql.pending).where(
                    sql.pending.c.key == seg_key, sql.pending.c.owner == state.owner
                )
            )
            if taken.rowcount != 1:
                raise StoreError("the pending write was swept as an orphan; append again")
            next_seq = (
                await conn.execute(
                    update(sql.sessions)
                    .where(sql.sessions.c.id == session_id)
                    .values(next_seq=sql.sessions.c.next_seq + 1)
                    .returning(sql.sessions.c.next_seq)
                )
            ).scalar_one_or_none()
            if next_seq is None:
                raise ScopeError("the scope was forgotten during the append")
            seq = int(next_seq) - 1
            row = segment_row(
                segment,
                session_id,
                seg_key,
                content_digest,
                seq=seq,
                n_tokens=n_tokens,
                n_chunks=n_chunks,
            )
            await conn.execute(insert(sql.segments).values(**row))
        return seq

    # -- reads ----------------------------------------------------------------------------

    @staticmethod
    def _query() -> Select[Any]:
        return select(
            sql.segments.c.segment_id,
            sql.segments.c.seq,
            sql.segments.c.kind,
            sql.segments.c.domain,
            sql.segments.c.source,
            sql.segments.c.created_at,
            sql.segments.c.n_tokens,
            sql.segments.c.n_chunks,
            sql.segments.c.text,
            sql.segments.c.meta,
        )

    @staticmethod
    def _to_segment(scope: Scope, row: Any) -> Segment:
        return Segment(
            id=row.segment_id,
            scope=scope,
            kind=SegmentKind(row.kind),
            text=row.text,
            domain=row.domain,
            source=row.source,
            seq=row.seq,
            created_at=row.created_at,
            n_tokens=row.n_tokens,
            n_chunks=row.n_chunks,
            metadata=row.meta,
        )

    async def read(
        self,
        scope: Scope,
        *,
        start: int | None = None,
        stop: int | None = None,
        kinds: Iterable[SegmentKind] | None = None,
        domains: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Segment]:
        """Segments of one session in ``seq`` order, filtered (see ``MemoryStore.timeline``)."""
        if limit is not None and limit < 0:
            raise InvalidInput("limit must be >= 0", limit=limit)
        session_id = await self.find_session(scope)
        if session_id is None:
            return []
        s = sql.segments.c
        query = self._query().where(s.session_id == session_id)
        if start is not None:
            query = query.where(s.seq >= start)
        if stop is not None:
            query = query.where(s.seq < stop)
        if kinds is not None:
            query = query.where(s.kind.in_([SegmentKind(k).value for k in kinds]))
        if domains is not None:
            query = query.where(s.domain_key.in_([keys.domain_key(d) for d in domains]))
        if since is not None:
            query = query.where(s.created_at >= since)
        if until is not None:
            query = query.where(s.created_at < until)
        query = query.order_by(s.seq.desc() if newest_first else s.seq)
        if limit is not None:
            query = query.limit(limit)
        async with self.state.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [self._to_segment(scope, row) for row in rows]

    async def get(self, scope: Scope, segment_id: str) -> Segment | None:
        """One segment of the scope by id, or None."""
        check_text(segment_id, "segment_id")
        session_id = await self.find_session(scope)
        if session_id is None:
            return None
        query = self._query().where(
            sql.segments.c.segment_key == keys.segment_key(scope, segment_id),
            sql.segments.c.session_id == session_id,
        )
        async with self.state.reading() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else self._to_segment(scope, row)

    async def locate(
        self, scope: Scope, seg_keys: Sequence[str]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """``seq`` and chunk count of the stored segments among ``seg_keys``, by key."""
        session_id = await self.find_session(scope)
        seq_of: dict[str, int] = {}
        chunks_of: dict[str, int] = {}
        if session_id is None:  # an unknown scope holds no segments
            return seq_of, chunks_of
        async with self.state.reading() as conn:
            for batch in in_batches(seg_keys):
                rows = await conn.execute(
                    select(
                        sql.segments.c.segment_key, sql.segments.c.seq, sql.segments.c.n_chunks
                    ).where(
                        sql.segments.c.session_id == session_id,
                        sql.segments.c.segment_key.in_(batch),
                    )
                )
                for seg_key, seq, n_chunks in rows:
                    seq_of[seg_key] = int(seq)
                    chunks_of[seg_key] = int(n_chunks)
        return seq_of, chunks_of

    async def owners(
        self, tenant_key: str, seg_keys: Sequence[str], *, session_key: str | None
    ) -> dict[str, tuple[str, int, str]]:
        """(segment id, seq, session name) of the committed segments among ``seg_keys``,
        within one tenant (and one session when ``session_key`` is given)."""
        committed: dict[str, tuple[str, int, str]] = {}
        async with self.state.reading() as conn:
            for batch in in_batches(seg_keys):
                # The scope is checked here, not in SQL: given the tenant's key, SQLite's
                # planner walks every segment of the tenant instead of the key index.
                query = (
                    select(
                        sql.segments.c.segment_key,
                        sql.segments.c.segment_id,
                        sql.segments.c.seq,
                        sql.sessions.c.name,
                        sql.sessions.c.key,
                        sql.tenants.c.key,
                    )
                    .join(sql.sessions, sql.sessions.c.id == sql.segments.c.session_id)
                    .join(sql.tenants, sql.tenants.c.id == sql.sessions.c.tenant_id)
                    .where(sql.segments.c.segment_key.in_(batch))
                )
                for seg_key, seg_id, seq, session, skey, tkey in await conn.execute(query):
                    if tkey == tenant_key and session_key in (None, skey):
                        committed[seg_key] = (seg_id, int(seq), session)
        return committed
