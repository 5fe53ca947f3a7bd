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

The store is a facade over its parts, each in its own module and given what it needs:
:class:`~.segments.SegmentTable` (the SQL timeline), :class:`~.ledger.PendingLedger`
(pending writes and the orphan sweep), :class:`~.chunks.ChunkTable` (LanceDB),
:class:`~.vectors.Vectors` (embeddings), :class:`~.search.Searcher`,
:class:`~.forget.Forgetter` and :class:`~.bulk.BulkWriter`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from refrag_agent.errors import InvalidInput, ScopeError, StoreError
from refrag_agent.lifecycle import AsyncClosing, Opening
from refrag_agent.logs import get_logger
from refrag_agent.timeline import Chunk, Scope, Segment, SegmentKind

from . import keys, sql
from .bulk import BulkWriter
from .chunks import ChunkTable, build_rows
from .encoding import EmbeddingFunction, FloatArray, NoEncoder, as_embeddings
from .forget import Forgetter
from .housekeeping import Housekeeper, release_free_memory
from .ledger import PendingLedger
from .purge import Purger
from .records import AppendResult, ChunkBatch, MaintenanceReport, SearchHit, StoreStats
from .search import Searcher, SearchMode
from .segments import SegmentTable, digest
from .settings import StoreSettings
from .state import StoreState, vector_matrix
from .validation import check_segment, check_text
from .vectors import Vectors

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


class MemoryStore(AsyncClosing):
    """Segments, chunks and embeddings of every conversation, behind one async API.

    Open with :meth:`open` (one local folder) or :meth:`connect` (a SQLAlchemy URL and a
    LanceDB URI); both can be awaited or used with ``async with``.
    """

    def __init__(self, state: StoreState) -> None:
        self._state = state
        self._segments = SegmentTable(state)
        self._purger = Purger(state)
        self._ledger = PendingLedger(state, self._segments, self._purger)
        self._vectors = Vectors(state)
        self._searcher = Searcher(state, self._segments)
        self._forgetter = Forgetter(state, self._segments, self._ledger, self._purger)
        self._bulk = BulkWriter(state, self._segments, self._ledger, self._vectors)
        self._housekeeper = Housekeeper(
            self.maintain,
            interval_s=state.settings.maintenance_interval_s,
            after_rows=state.settings.maintenance_after_rows,
            after_versions=state.settings.maintenance_after_versions,
        )
        state.chunks.on_commit = self._housekeeper.committed
        self._maintaining = asyncio.Lock()

    @property
    def encoder(self) -> EmbeddingFunction:
        return self._state.encoder

    @property
    def settings(self) -> StoreSettings:
        return self._state.settings

    @property
    def read_only(self) -> bool:
        return self._state.read_only

    @property
    def schema_version(self) -> int:
        return self._state.schema_version

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
            StoreState(
                engines=engines,
                chunks=chunks,
                encoder=encoder,
                settings=settings,
                schema_version=version,
            )
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
            StoreState(
                engines=engines,
                chunks=chunks,
                encoder=NoEncoder(dim),
                settings=settings,
                schema_version=version,
                read_only=True,
            )
        )

    async def aclose(self) -> None:
        """Stop housekeeping, finish pending LanceDB commits, release connections."""
        state = self._state
        if state.closed:
            return
        state.closed = True
        await self._housekeeper.stop()
        await state.chunks.close()
        await state.engines.dispose()

    @property
    def closed(self) -> bool:
        return self._state.closed

    # -- scopes ---------------------------------------------------------------------------

    async def create_scope(self, scope: Scope) -> bool:
        """Register a tenant/session; True if it was new. Appends need a registered scope."""
        self._state.check_open()
        if not isinstance(scope, Scope):
            raise ScopeError("expected a Scope", type=type(scope).__name__)
        # A forget of this scope that died half-way is finished first.
        await self._ledger.sweep(only=[keys.tenant_key(scope.tenant), keys.session_key(scope)])
        return await self._segments.create_scope(scope)

    async def has_scope(self, scope: Scope) -> bool:
        """Whether the scope was created (:meth:`create_scope`)."""
        self._state.check_open()
        return await self._segments.find_session(scope) is not None

    async def list_sessions(self, tenant: str) -> list[str]:
        """Session names of one tenant, oldest first; none for an unknown tenant."""
        self._state.check_open()
        return await self._segments.list_sessions(tenant)

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
        state = self._state
        state.check_open()
        hashes = check_segment(
            segment,
            chunks,
            max_chars=state.settings.max_segment_chars,
            max_chunks=state.settings.max_chunks_per_segment,
        )
        n = len(chunks)
        provided = (
            None if embeddings is None else as_embeddings(embeddings, n=n, dim=self.encoder.dim)
        )
        scope = segment.scope
        seg_key = keys.segment_key(scope, segment.id)
        n_tokens = sum(len(c.token_ids) for c in chunks)
        content = digest(segment, chunks)
        session_id = await self._segments.session_id(scope)

        existing = await self._segments.existing(seg_key, content, segment.id)
        if existing is not None:
            return existing
        vectors, n_reused, n_encoded = await self._vectors.resolve(
            keys.tenant_key(scope.tenant), hashes, chunks, provided
        )
        replay = await self._ledger.claim(seg_key, content, segment.id)
        if replay is not None:
            return replay
        try:
            info = state.row_info(segment, seg_key)
            await state.chunks.add(build_rows(info, chunks, hashes, vectors))
            seq = await self._segments.commit(
                segment, session_id, seg_key, content, n_tokens=n_tokens, n_chunks=n
            )
        except BaseException:
            await asyncio.shield(self._ledger.abandon(seg_key))
            raise
        return AppendResult(
            segment_id=segment.id,
            seq=seq,
            n_chunks=n,
            n_tokens=n_tokens,
            n_reused=n_reused,
            n_encoded=n_encoded,
        )

    async def embed(self, texts: Sequence[str]) -> FloatArray:
        """The store's encoder's vectors for ``texts``: float32 ``(len(texts), dim)``.

        Concurrent calls (and the store's own encodings) share one encoder call; a text's
        vector does not depend on the others it shares it with beyond float rounding.
        Nothing is cached or written. A failing encoder raises ``StoreError``.
        """
        self._state.check_open()
        if isinstance(texts, str):
            raise InvalidInput("texts must be a sequence of strings, not one string")
        return await self._state.encode(texts)

    # -- reads ----------------------------------------------------------------------------

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
        self._state.check_open()
        return await self._segments.read(
            scope,
            start=start,
            stop=stop,
            kinds=kinds,
            domains=domains,
            since=since,
            until=until,
            limit=limit,
            newest_first=newest_first,
        )

    async def get_segment(self, scope: Scope, segment_id: str) -> Segment | None:
        """One segment of the scope by id, or None."""
        self._state.check_open()
        return await self._segments.get(scope, segment_id)

    async def fetch(
        self, scope: Scope, segment_ids: Sequence[str], *, strict: bool = True
    ) -> ChunkBatch:
        """Chunks (tokens and embeddings) of some segments of the scope, in (seq, index) order.

        With ``strict``, an id that is not a stored segment of this scope is an
        ``InvalidInput``; otherwise it is skipped. Embeddings written by another encoder
        are re-encoded now and written back (never returned stale).
        """
        state = self._state
        state.check_open()
        if isinstance(segment_ids, str):
            raise InvalidInput("segment_ids must be a sequence of ids, not one string")
        ids = list(dict.fromkeys(segment_ids))
        for sid in ids:
            check_text(sid, "segment_id")
        key_to_id = {keys.segment_key(scope, sid): sid for sid in ids}
        seq_of, chunks_of = await self._segments.locate(scope, list(key_to_id))
        missing = [key_to_id[k] for k in key_to_id if k not in seq_of]
        if missing and strict:
            raise InvalidInput(
                "segments not found in this scope",
                count=len(missing),
                first=[m[:64] for m in missing[:5]],
            )
        found = sorted(seq_of, key=seq_of.__getitem__)
        if not found:
            return _empty_batch(state.encoder.dim, state.encoder.fingerprint)
        # Read together with concurrent fetches (other sessions' calls): one scan.
        rows = await state.chunks.rows_of(keys.session_key(scope), found, _FETCH_COLUMNS)
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
        vectors = vector_matrix(rows, state.encoder.dim).copy()
        stale = np.asarray(
            [k != state.encoder_key for k in rows.column("encoder_key").to_pylist()], dtype=bool
        )
        n_stale = int(stale.sum())
        texts = rows.column("text").to_pylist()
        if n_stale:
            stale_rows = np.flatnonzero(stale)
            fresh = await state.encode([texts[i] for i in stale_rows.tolist()])
            vectors[stale_rows] = fresh
            await self._vectors.rewrite(
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
            encoder_fingerprint=state.encoder.fingerprint,
            n_reencoded=n_stale,
        )

    async def maintain(self) -> MaintenanceReport:
        """One housekeeping round: sweep orphans, build indexes, compact, drop old versions;
        after a forget, also erase what it left in the files (see :meth:`forget_tenant`).

        The background housekeeping calls it; rounds of one store run one at a time, so
        awaiting it also waits for a round already running.
        """
        state = self._state
        state.check_open()
        state.check_writable()
        async with self._maintaining:
            started = time.perf_counter()
            swept = await self._ledger.sweep()
            owed = await self._purger.owed()
            moved = 0
            if owed:
                moved = await state.chunks.rewrite_fragments(set().union(*owed.values()))
            created = await state.chunks.ensure_indexes(ann_min_rows=state.settings.ann_min_rows)
            if owed:
                await state.chunks.rebuild_text_index()
            # A purge keeps no old version: they hold the forgotten rows. (LanceDB always
            # keeps the latest; 1 ms rather than 0, which it warns about for that reason.)
            grace = (
                timedelta(milliseconds=1)
                if owed
                else timedelta(seconds=state.settings.cleanup_older_than_s)
            )
            await state.chunks.optimize(cleanup_older_than=grace)
            purged = bool(owed) and await self._purger.vacuum()
            if purged:
                await self._purger.settle(owed)
                log.info("memory.purged", rows_rewritten=moved)
            await release_free_memory()
            return MaintenanceReport(
                orphans_swept=swept,
                indexes_created=created,
                compacted=True,
                purged=purged,
                rows_rewritten=moved,
                seconds=time.perf_counter() - started,
            )

    async def append_many(
        self, items: Sequence[tuple[Segment, Sequence[Chunk], Any]]
    ) -> list[AppendResult]:
        """Bulk ingest: many ``(segment, chunks, embeddings or None)`` in a few commits.

        Same guarantees as :meth:`append` (all checks before any write, pending rows, chunk
        rows before segment rows); segment ids already stored are replayed, not rewritten.
        Results come back in the order of ``items``.
        """
        self._state.check_open()
        return await self._bulk.append_many(items)

    # -- search, forget, re-encode --------------------------------------------------------

    async def search(
        self,
        scope: Scope,
        query: str,
        *,
        limit: int = 10,
        kinds: Iterable[SegmentKind] | None = None,
        domains: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        all_sessions: bool = False,
        mode: SearchMode = "hybrid",
    ) -> list[SearchHit]:
        """Chunks of the scope (or of all the tenant's sessions) that match ``query``.

        Hybrid mode fuses a vector ranking and a full-text ranking by reciprocal rank.
        """
        self._state.check_open()
        return await self._searcher.search(
            scope,
            query,
            limit=limit,
            kinds=kinds,
            domains=domains,
            since=since,
            until=until,
            all_sessions=all_sessions,
            mode=mode,
        )

    async def forget_segment(self, scope: Scope, segment_id: str) -> bool:
        """Delete one segment and its chunks; False if it was not stored.

        Gone from every read on return; gone from the store's files once a later
        :meth:`maintain` returns (see :meth:`forget_tenant`).
        """
        self._state.check_open()
        try:
            return await self._forgetter.forget_segment(scope, segment_id)
        finally:
            self._housekeeper.wake()

    async def forget_session(self, scope: Scope) -> int:
        """Delete a session with all its segments and chunks; return how many segments.

        Gone from every read on return; gone from the store's files once a later
        :meth:`maintain` returns (see :meth:`forget_tenant`).
        """
        self._state.check_open()
        try:
            return await self._forgetter.forget_session(scope)
        finally:
            self._housekeeper.wake()

    async def forget_tenant(self, tenant: str) -> int:
        """Delete a tenant with all its sessions; return how many segments.

        When this returns, no read (timeline, fetch, search, stats, sessions) sees the
        tenant. Its bytes are still in the store's files (LanceDB keeps deleted rows in
        their data files and in old table versions; SQLite keeps them in free pages and
        its log) until the next :meth:`maintain` returns: that round writes the other rows
        of the affected LanceDB fragments again, rebuilds the full-text index, drops every
        old table version and runs VACUUM. The background housekeeping starts that round
        at once; ``await store.maintain()`` returns once it is done. On PostgreSQL the
        timeline tables are vacuumed; the server's own files (its WAL, backups) are its
        operator's. Dropping old versions at once means that a read another process
        started on one of them at that moment fails; it can be retried (this store's own
        reads are run again on the newest version).
        """
        self._state.check_open()
        try:
            return await self._forgetter.forget_tenant(tenant)
        finally:
            self._housekeeper.wake()

    async def reencode(self, *, scope: Scope | None = None) -> int:
        """Re-encode every chunk embedded by another encoder (of one scope, or all)."""
        self._state.check_open()
        scope_filter = None
        if scope is not None:
            await self._segments.session_id(scope)
            scope_filter = keys.eq("session_key", keys.session_key(scope))
        return await self._vectors.reencode(scope_filter)

    async def sweep_orphans(self, *, only: Sequence[str] | None = None) -> int:
        """Finish writes and forgets whose owner died: delete their chunk rows."""
        self._state.check_open()
        return await self._ledger.sweep(only=only)

    # -- stats ----------------------------------------------------------------------------

    async def stats(self, scope: Scope | None = None) -> StoreStats:
        """Counts for the whole store, or for one session."""
        state = self._state
        state.check_open()
        async with state.reading() as conn:
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
        stale_where = keys.all_of(where, keys.ne("encoder_key", state.encoder_key))
        return StoreStats(
            tenants=int(n_tenants),
            sessions=int(n_sessions),
            segments=int(n_segments),
            chunks=await state.chunks.count(where),
            stale_chunks=await state.chunks.count(stale_where),
            pending_writes=int(n_pending),
            bytes_on_disk=state.chunks.bytes_on_disk() if scope is None else None,
            schema_version=state.schema_version,
            lance_version=await state.chunks.version(),
            encoder_fingerprint=state.encoder.fingerprint,
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
