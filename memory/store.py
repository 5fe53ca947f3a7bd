"""The memory store: the SQL timeline plus the LanceDB chunk table, scoped and crash-safe.

Write protocol of one append:

1. check everything the caller gave (``InvalidInput`` before any write);
2. resolve missing embeddings (in-process cache, then the chunk table, then the encoder);
3. record a *pending write* for the segment key in SQL (committed);
4. add the chunk rows to LanceDB (one atomic commit, grouped with concurrent appends);
5. in one SQL transaction: delete the pending row, take the session's next ``seq``, insert
   the segment row. The segment is visible from this commit on.

A crash after 3 leaves a pending row whose owner is dead; opening the store (and the
background housekeeping) deletes that key's chunk rows and then the pending row. Forgets
use the same pending rows, so a crash half-way through a forget is finished on open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Select, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from refrag_agent.errors import InvalidInput, ScopeError, StoreError
from refrag_agent.lifecycle import AsyncClosing, Opening
from refrag_agent.logs import get_logger
from refrag_agent.model.chunker import Chunk
from refrag_agent.timeline import Scope, Segment, SegmentKind

from . import keys, sql
from .bulk import BulkMixin
from .chunks import ChunkTable, build_rows
from .core import _batches, _vectors
from .encoding import EmbeddingFunction, NoEncoder, as_embeddings
from .forget import ForgetMixin
from .records import AppendResult, ChunkBatch, MaintenanceReport, StoreStats
from .reencode import ReencodeMixin
from .search import SearchMixin
from .settings import StoreSettings
from .validation import check_segment, check_tenant, check_text

log = get_logger(__name__)

SQLITE_FILE = "timeline.sqlite3"
LANCE_DIR = "lance"
_FETCH_COLUMNS = [
    "segment_key",
    "chunk_index",
    "token_ids",
    "text",
    "content_hash",
    "vector",
    "encoder_key",
]


class MemoryStore(SearchMixin, ForgetMixin, BulkMixin, ReencodeMixin, AsyncClosing):
    """Segments, chunks and embeddings of every conversation, behind one async API.

    Open with :meth:`open` (one local folder) or :meth:`connect` (a SQLAlchemy URL and a
    LanceDB URI); both can be awaited or used with ``async with``.
    """

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        encoder: EmbeddingFunction,
        settings: StoreSettings | None = None,
    ) -> Opening[MemoryStore]:
        """The embedded store in one folder: ``timeline.sqlite3`` and ``lance/``."""
        folder = Path(path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError("cannot create the store folder", path=str(folder)) from e
        return cls.connect(
            _sqlite_url(folder), str(folder / LANCE_DIR), encoder=encoder, settings=settings
        )

    @classmethod
    def open_read_only(
        cls, path: str | Path, *, settings: StoreSettings | None = None
    ) -> Opening[MemoryStore]:
        """An existing embedded store, to read without loading an encoder; nothing is written.

        Timelines, segments, sessions, stats and text search (over what a writable store
        indexed) work; writes and what needs the encoder (vector search, ``fetch``) raise
        ``InvalidInput``. A folder that holds no store raises ``InvalidInput`` ("no memory
        in ...") and is not created.
        """
        return Opening(cls._connect_read_only(Path(path), settings or StoreSettings()))

    @classmethod
    def connect(
        cls,
        sql_url: str,
        lance_uri: str,
        *,
        encoder: EmbeddingFunction,
        settings: StoreSettings | None = None,
        storage_options: dict[str, str] | None = None,
    ) -> Opening[MemoryStore]:
        """A store on any SQLAlchemy async URL (aiosqlite, asyncpg) and LanceDB URI."""
        return Opening(
            cls._connect(
                sql_url,
                lance_uri,
                encoder=encoder,
                settings=settings or StoreSettings(),
                storage_options=storage_options,
            )
        )

    @classmethod
    async def _connect(
        cls,
        sql_url: str,
        lance_uri: str,
        *,
        encoder: EmbeddingFunction,
        settings: StoreSettings,
        storage_options: dict[str, str] | None,
    ) -> MemoryStore:
        if not isinstance(encoder, EmbeddingFunction):
            raise InvalidInput("encoder must have fingerprint, dim and encode()")
        try:
            engines = sql.make_engines(
                sql_url, schema=settings.sql_schema, busy_timeout_s=settings.busy_timeout_s
            )
        except SQLAlchemyError as e:
            raise StoreError("cannot create the SQL engine") from e
        try:
            try:
                version = await sql.ensure_schema(engines, dim=encoder.dim)
            except (SQLAlchemyError, OSError) as e:
                raise StoreError(
                    "cannot open the SQL timeline", url=engines.url.render_as_string()
                ) from e
            chunks = await ChunkTable.open(
                lance_uri,
                dim=encoder.dim,
                storage_options=storage_options,
                read_consistency=_consistency(settings),
            )
        except BaseException:
            await engines.dispose()
            raise
        store = cls(
            engines=engines,
            chunks=chunks,
            encoder=encoder,
            settings=settings,
            schema_version=version,
        )
        swept = await store.sweep_orphans()
        store._housekeeper.start()
        log.info("memory.opened", lance=lance_uri, swept=swept, schema_version=version)
        return store

    @classmethod
    async def _connect_read_only(cls, folder: Path, settings: StoreSettings) -> MemoryStore:
        if not (folder / SQLITE_FILE).is_file() or not (folder / LANCE_DIR).is_dir():
            raise InvalidInput(f"no memory in {folder}")
        try:
            engines = sql.make_engines(
                _sqlite_url(folder), schema=None, busy_timeout_s=settings.busy_timeout_s
            )
        except SQLAlchemyError as e:
            raise StoreError("cannot create the SQL engine") from e
        try:
            try:
                schema = await sql.read_schema(engines)
            except SQLAlchemyError as e:
                raise StoreError("cannot read the SQL timeline", path=str(folder)) from e
            if schema is None:
                raise InvalidInput(f"no memory in {folder}")
            version, dim = schema
            chunks = await ChunkTable.open(
                str(folder / LANCE_DIR),
                dim=dim,
                read_consistency=_consistency(settings),
                read_only=True,
            )
        except BaseException:
            await engines.dispose()
            raise
        log.info("memory.opened", lance=str(folder / LANCE_DIR), read_only=True)
        return cls(
            engines=engines,
            chunks=chunks,
            encoder=NoEncoder(dim),
            settings=settings,
            schema_version=version,
            read_only=True,
        )

    async def aclose(self) -> None:
        """Stop housekeeping, finish pending LanceDB commits, release connections."""
        if self._closed:
            return
        self._closed = True
        await self._housekeeper.stop()
        await self._chunks.close()
        await self._engines.dispose()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- scopes ---------------------------------------------------------------------------

    async def create_scope(self, scope: Scope) -> bool:
        """Register a tenant/session; True if it was new. Appends need a registered scope."""
        self._check_open()
        if not isinstance(scope, Scope):
            raise ScopeError("expected a Scope", type=type(scope).__name__)
        tkey, skey = keys.tenant_key(scope.tenant), keys.session_key(scope)
        await self._finish_forgets([tkey, skey])
        now = datetime.now(timezone.utc)
        for _attempt in range(3):
            try:
                async with self._writing() as conn:
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

    async def has_scope(self, scope: Scope) -> bool:
        """Whether the scope was created (:meth:`create_scope`)."""
        self._check_open()
        return await self._find_session(scope) is not None

    async def list_sessions(self, tenant: str) -> list[str]:
        """Session names of one tenant, oldest first; none for an unknown tenant."""
        self._check_open()
        check_tenant(tenant)
        tenant_id = await self._find_tenant(tenant)
        if tenant_id is None:
            return []
        async with self._reading() as conn:
            rows = await conn.execute(
                select(sql.sessions.c.name)
                .where(sql.sessions.c.tenant_id == tenant_id)
                .order_by(sql.sessions.c.id)
            )
            return [str(name) for (name,) in rows]

    # -- append ---------------------------------------------------------------------------

    async def append(
        self,
        segment: Segment,
        chunks: Sequence[Chunk],
        *,
        embeddings: Any = None,
    ) -> AppendResult:
        """Store one segment with its chunks; idempotent for the segment's id.

        ``embeddings`` (torch or numpy, float (n_chunks, dim)) skips the encoder; without
        it, embeddings come from the cache or the encoder. The segment's ``seq`` is
        assigned here; a ``seq`` on the given segment is ignored.
        """
        self._check_open()
        hashes = check_segment(
            segment,
            chunks,
            max_chars=self.settings.max_segment_chars,
            max_chunks=self.settings.max_chunks_per_segment,
        )
        n = len(chunks)
        provided = (
            None if embeddings is None else as_embeddings(embeddings, n=n, dim=self.encoder.dim)
        )
        scope = segment.scope
        seg_key = keys.segment_key(scope, segment.id)
        n_tokens = sum(len(c.token_ids) for c in chunks)
        digest = self._digest(segment, chunks)
        session_id = await self._session_id(scope)

        existing = await self._existing(seg_key, digest, segment.id)
        if existing is not None:
            return existing
        vectors, n_reused, n_encoded = await self._resolve_embeddings(
            keys.tenant_key(scope.tenant), hashes, chunks, provided
        )
        replay = await self._claim(seg_key, digest, segment.id)
        if replay is not None:
            return replay
        try:
            info = self._row_info(segment, seg_key)
            await self._chunks.add(build_rows(info, chunks, hashes, vectors))
            seq = await self._commit_segment(
                segment, session_id, seg_key, digest, n_tokens=n_tokens, n_chunks=n
            )
        except BaseException:
            await asyncio.shield(self._abandon(seg_key))
            raise
        self._housekeeper.rows_added(n)
        return AppendResult(
            segment_id=segment.id,
            seq=seq,
            n_chunks=n,
            n_tokens=n_tokens,
            n_reused=n_reused,
            n_encoded=n_encoded,
        )

    # -- reads ----------------------------------------------------------------------------

    def _segment_query(self) -> Select[Any]:
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

    async def timeline(
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
        """Segments of one session in ``seq`` order: ``start <= seq < stop``, filtered.

        A session nothing was written to has an empty timeline.
        """
        self._check_open()
        if limit is not None and limit < 0:
            raise InvalidInput("limit must be >= 0", limit=limit)
        session_id = await self._find_session(scope)
        if session_id is None:
            return []
        s = sql.segments.c
        query = self._segment_query().where(s.session_id == session_id)
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
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [self._to_segment(scope, row) for row in rows]

    async def get_segment(self, scope: Scope, segment_id: str) -> Segment | None:
        """One segment of the scope by id, or None."""
        self._check_open()
        check_text(segment_id, "segment_id")
        session_id = await self._find_session(scope)
        if session_id is None:
            return None
        query = self._segment_query().where(
            sql.segments.c.segment_key == keys.segment_key(scope, segment_id),
            sql.segments.c.session_id == session_id,
        )
        async with self._reading() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else self._to_segment(scope, row)

    async def fetch(
        self, scope: Scope, segment_ids: Sequence[str], *, strict: bool = True
    ) -> ChunkBatch:
        """Chunks (tokens and embeddings) of some segments of the scope, in (seq, index) order.

        With ``strict``, an id that is not a stored segment of this scope is an
        ``InvalidInput``; otherwise it is skipped. Embeddings written by another encoder
        are re-encoded now and written back (never returned stale).
        """
        self._check_open()
        if isinstance(segment_ids, str):
            raise InvalidInput("segment_ids must be a sequence of ids, not one string")
        ids = list(dict.fromkeys(segment_ids))
        for sid in ids:
            check_text(sid, "segment_id")
        session_id = await self._find_session(scope)
        key_to_id = {keys.segment_key(scope, sid): sid for sid in ids}
        seq_of: dict[str, int] = {}
        chunks_of: dict[str, int] = {}
        # An unknown scope holds no segments: every id is missing.
        known = [] if session_id is None else list(key_to_id)
        async with self._reading() as conn:
            for batch in _batches(known):
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
        missing = [key_to_id[k] for k in key_to_id if k not in seq_of]
        if missing and strict:
            raise InvalidInput(
                "segments not found in this scope",
                count=len(missing),
                first=[m[:64] for m in missing[:5]],
            )
        found = sorted(seq_of, key=seq_of.__getitem__)
        if not found:
            return _empty_batch(self.encoder.dim, self.encoder.fingerprint)
        tables = []
        for batch in _batches(found):
            tables.append(
                await self._chunks.scan(
                    keys.all_of(
                        keys.eq("session_key", keys.session_key(scope)),
                        keys.isin("segment_key", batch),
                    ),
                    _FETCH_COLUMNS,
                )
            )
        rows = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        seg_keys = rows.column("segment_key").to_pylist()
        index = rows.column("chunk_index").to_numpy()
        seqs = np.fromiter((seq_of[k] for k in seg_keys), dtype=np.int64, count=len(seg_keys))
        order = np.lexsort((index, seqs))  # by seq, then chunk index
        counts: dict[str, int] = {}
        for k in seg_keys:
            counts[k] = counts.get(k, 0) + 1
        broken = [key_to_id[k] for k in found if counts.get(k, 0) != chunks_of[k]]
        if broken:
            raise StoreError(
                "stored chunks do not match the timeline (corrupt store?)",
                segments=[b[:64] for b in broken[:5]],
            )
        rows = rows.take(pa.array(order))
        seg_keys = [seg_keys[i] for i in order.tolist()]
        vectors = _vectors(rows, self.encoder.dim).copy()
        stale = np.asarray(
            [k != self._encoder_key for k in rows.column("encoder_key").to_pylist()], dtype=bool
        )
        n_stale = int(stale.sum())
        texts = rows.column("text").to_pylist()
        if n_stale:
            stale_rows = np.flatnonzero(stale)
            fresh = await self._encode([texts[i] for i in stale_rows.tolist()])
            vectors[stale_rows] = fresh
            await self._rewrite_vectors(
                sorted({seg_keys[i] for i in stale_rows.tolist()}), scope_filter=None
            )
        tokens = rows.column("token_ids").combine_chunks()
        offsets = tokens.offsets.to_numpy().astype(np.int64)
        values = tokens.values.to_numpy().astype(np.int32, copy=False)
        return ChunkBatch(
            segment_ids=[key_to_id[k] for k in seg_keys],
            seq=seqs[order],
            chunk_index=rows.column("chunk_index").to_numpy().astype(np.int32),
            token_values=values[offsets[0] : offsets[-1]] if len(offsets) else values,
            token_offsets=offsets - offsets[0],
            texts=texts,
            content_hashes=rows.column("content_hash").to_pylist(),
            embeddings=vectors,
            encoder_fingerprint=self.encoder.fingerprint,
            n_reencoded=n_stale,
        )

    async def maintain(self) -> MaintenanceReport:
        """One housekeeping round: sweep orphans, build indexes, compact, drop old versions."""
        self._check_open()
        self._check_writable()
        started = time.perf_counter()
        swept = await self.sweep_orphans()
        created = await self._chunks.ensure_indexes(ann_min_rows=self.settings.ann_min_rows)
        await self._chunks.optimize(
            cleanup_older_than=timedelta(seconds=self.settings.cleanup_older_than_s)
        )
        return MaintenanceReport(
            orphans_swept=swept,
            indexes_created=created,
            compacted=True,
            seconds=time.perf_counter() - started,
        )

    # -- stats ----------------------------------------------------------------------------

    async def stats(self, scope: Scope | None = None) -> StoreStats:
        """Counts for the whole store, or for one session."""
        self._check_open()
        async with self._reading() as conn:
            if scope is None:
                n_tenants = (
                    await conn.execute(select(func.count()).select_from(sql.tenants))
                ).scalar_one()
                n_sessions = (
                    await conn.execute(select(func.count()).select_from(sql.sessions))
                ).scalar_one()
                n_segments = (
                    await conn.execute(select(func.count()).select_from(sql.segments))
                ).scalar_one()
            else:
                n_tenants = n_sessions = 1
                session_id = (
                    await conn.execute(
                        select(sql.sessions.c.id).where(
                            sql.sessions.c.key == keys.session_key(scope)
                        )
                    )
                ).scalar_one_or_none()
                if session_id is None:
                    raise ScopeError("unknown scope")
                n_segments = (
                    await conn.execute(
                        select(func.count())
                        .select_from(sql.segments)
                        .where(sql.segments.c.session_id == session_id)
                    )
                ).scalar_one()
            n_pending = (
                await conn.execute(select(func.count()).select_from(sql.pending))
            ).scalar_one()
        where = None if scope is None else keys.eq("session_key", keys.session_key(scope))
        stale_where = keys.all_of(where, keys.ne("encoder_key", self._encoder_key))
        return StoreStats(
            tenants=int(n_tenants),
            sessions=int(n_sessions),
            segments=int(n_segments),
            chunks=await self._chunks.count(where),
            stale_chunks=await self._chunks.count(stale_where),
            pending_writes=int(n_pending),
            bytes_on_disk=self._chunks.bytes_on_disk() if scope is None else None,
            schema_version=self.schema_version,
            lance_version=await self._chunks.version(),
            encoder_fingerprint=self.encoder.fingerprint,
        )


def _sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{(folder / SQLITE_FILE).resolve()}"


def _consistency(settings: StoreSettings) -> timedelta | None:
    if settings.read_consistency_s is None:
        return None
    return timedelta(seconds=settings.read_consistency_s)


def _empty_batch(dim: int, fingerprint: str) -> ChunkBatch:
    return ChunkBatch(
        segment_ids=[],
        seq=np.zeros(0, dtype=np.int64),
        chunk_index=np.zeros(0, dtype=np.int32),
        token_values=np.zeros(0, dtype=np.int32),
        token_offsets=np.zeros(1, dtype=np.int64),
        texts=[],
        content_hashes=[],
        embeddings=np.zeros((0, dim), dtype=np.float32),
        encoder_fingerprint=fingerprint,
    )


async def open_store(
    path: str | Path, *, encoder: EmbeddingFunction, settings: StoreSettings | None = None
) -> MemoryStore:
    """The embedded store in one folder (shorthand for ``await MemoryStore.open(...)``)."""
    return await MemoryStore.open(path, encoder=encoder, settings=settings)
