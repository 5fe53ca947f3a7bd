"""The core of the memory store: state, SQL helpers and the write protocol's steps.

:class:`StoreCore` holds what every part of :class:`~refrag_agent.memory.MemoryStore`
shares; the public methods live in small mixins (search, forget, bulk, reencode) and in
``store.py``. See ``store.py`` for the write protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from refrag_agent.errors import InvalidInput, ScopeError, StoreError
from refrag_agent.logs import get_logger
from refrag_agent.model.chunker import Chunk
from refrag_agent.timeline import Scope, Segment

from . import keys, sql
from .cache import EmbeddingCache
from .chunks import ChunkTable, SegmentRowInfo
from .encoding import EmbeddingFunction, FloatArray, as_embeddings
from .housekeeping import Housekeeper
from .records import AppendResult, MaintenanceReport
from .settings import StoreSettings

log = get_logger(__name__)


_IN_BATCH = 900
_LEVEL_COLUMN = {"segment": "segment_key", "session": "session_key", "tenant": "tenant_key"}


def _batches(items: Sequence[str], size: int = _IN_BATCH) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _vectors(rows: pa.Table, dim: int) -> FloatArray:
    column = rows.column("vector").combine_chunks()
    flat = column.values.to_numpy(zero_copy_only=False)
    start = column.offset * dim
    vectors: FloatArray = flat[start : start + len(column) * dim].reshape(len(column), dim)
    return vectors  # (n, dim)


class StoreCore:
    """State and helpers shared by the store's parts."""

    def __init__(
        self,
        *,
        engines: sql.Engines,
        chunks: ChunkTable,
        encoder: EmbeddingFunction,
        settings: StoreSettings,
        schema_version: int,
        read_only: bool = False,
    ) -> None:
        self._engines = engines
        self._chunks = chunks
        self.encoder = encoder
        self.settings = settings
        self.schema_version = schema_version
        self.read_only = read_only
        self._encoder_key = keys.encoder_key(encoder.fingerprint)
        self._cache = EmbeddingCache(settings.embedding_cache_size)
        self._write_lock = asyncio.Lock()
        self._host = socket.gethostname()
        self._owner = f"{self._host}|{os.getpid()}|{uuid.uuid4().hex}"
        self._closed = False
        self._housekeeper = Housekeeper(
            self.maintain,
            interval_s=settings.maintenance_interval_s,
            after_rows=settings.maintenance_after_rows,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInput("the memory store is closed")

    def _check_writable(self) -> None:
        if self.read_only:
            raise InvalidInput(
                "this memory store was opened read-only",
                fix="open it with MemoryStore.open(path, encoder=...) to write",
            )

    # -- SQL helpers ----------------------------------------------------------------------

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; in-process writers queue on a lock first (see sql.py)."""
        self._check_writable()
        async with self._write_lock:
            try:
                async with self._engines.writer.begin() as conn:
                    yield conn
            except IntegrityError:
                raise
            except SQLAlchemyError as e:
                raise StoreError("SQL write failed") from e

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engines.reader.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise StoreError("SQL read failed") from e

    async def _find_session(self, scope: Scope) -> int | None:
        """The session's row id; None for a scope never created (reads see it empty)."""
        async with self._reading() as conn:
            row = (
                await conn.execute(
                    select(sql.sessions.c.id).where(sql.sessions.c.key == keys.session_key(scope))
                )
            ).scalar_one_or_none()
        return None if row is None else int(row)

    async def _session_id(self, scope: Scope) -> int:
        """The session's row id, for writes: an unknown scope is a ``ScopeError``."""
        session_id = await self._find_session(scope)
        if session_id is None:
            raise ScopeError(
                "unknown scope: create it with create_scope() first",
                tenant=scope.tenant[:64],
                session=scope.session[:64],
            )
        return session_id

    async def _find_tenant(self, tenant: str) -> int | None:
        async with self._reading() as conn:
            row = (
                await conn.execute(
                    select(sql.tenants.c.id).where(sql.tenants.c.key == keys.tenant_key(tenant))
                )
            ).scalar_one_or_none()
        return None if row is None else int(row)

    async def _tenant_id(self, tenant: str) -> int:
        tenant_id = await self._find_tenant(tenant)
        if tenant_id is None:
            raise ScopeError("unknown tenant", tenant=tenant[:64])
        return tenant_id

    @staticmethod
    def _digest(segment: Segment, chunks: Sequence[Chunk]) -> str:
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

    async def _existing(self, seg_key: str, digest: str, segment_id: str) -> AppendResult | None:
        async with self._reading() as conn:
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
        if row.digest != digest:
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

    async def _claim(self, seg_key: str, digest: str, segment_id: str) -> AppendResult | None:
        """Record the pending write; if another writer holds this id, wait for its result."""
        deadline = time.monotonic() + self.settings.busy_timeout_s
        while True:
            try:
                async with self._writing() as conn:
                    await conn.execute(
                        insert(sql.pending).values(
                            key=seg_key, level="segment", owner=self._owner, started_at=time.time()
                        )
                    )
                # Committed after a racing writer's commit: the id may be stored by now.
                existing = await self._existing(seg_key, digest, segment_id)
                if existing is not None:
                    # Nothing of ours is in LanceDB: release the pending row only.
                    await self._release(seg_key)
                return existing
            except IntegrityError:
                pass
            existing = await self._existing(seg_key, digest, segment_id)
            if existing is not None:
                return existing
            await self.sweep_orphans(only=[seg_key])
            if time.monotonic() > deadline:
                raise StoreError("another writer holds this segment id", segment_id=segment_id)
            await asyncio.sleep(0.01)

    async def _commit_segment(
        self,
        segment: Segment,
        session_id: int,
        seg_key: str,
        digest: str,
        *,
        n_tokens: int,
        n_chunks: int,
    ) -> int:
        async with self._writing() as conn:
            taken = await conn.execute(
                delete(sql.pending).where(
                    sql.pending.c.key == seg_key, sql.pending.c.owner == self._owner
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
            await conn.execute(
                insert(sql.segments).values(
                    **self._segment_row(
                        segment,
                        session_id,
                        seg_key,
                        digest,
                        seq=seq,
                        n_tokens=n_tokens,
                        n_chunks=n_chunks,
                    )
                )
            )
        return seq

    async def _abandon(self, seg_key: str) -> None:
        """Undo a write that will not commit: its chunk rows, then its pending row."""
        try:
            async with self._reading() as conn:
                mine = (
                    await conn.execute(
                        select(func.count())
                        .select_from(sql.pending)
                        .where(sql.pending.c.key == seg_key, sql.pending.c.owner == self._owner)
                    )
                ).scalar_one()
            # No pending row of ours means the segment committed (or was swept): keep rows.
            if mine:
                if not await self._committed(seg_key):
                    await self._chunks.delete(keys.eq("segment_key", seg_key))
                await self._release(seg_key)
        except Exception as e:
            # The pending row stays; the next sweep finishes the job.
            log.warning("memory.abandon_failed", error=repr(e))

    async def _release(self, key: str) -> None:
        async with self._writing() as conn:
            await conn.execute(
                delete(sql.pending).where(
                    sql.pending.c.key == key, sql.pending.c.owner == self._owner
                )
            )

    async def _committed(self, seg_key: str) -> bool:
        async with self._reading() as conn:
            found = (
                await conn.execute(
                    select(sql.segments.c.id).where(sql.segments.c.segment_key == seg_key)
                )
            ).scalar_one_or_none()
        return found is not None

    async def _resolve_embeddings(
        self,
        tenant_key: str,
        hashes: Sequence[str],
        chunks: Sequence[Chunk],
        provided: FloatArray | None,
    ) -> tuple[FloatArray, int, int]:
        """Embeddings for every chunk, and how many were reused and encoded."""
        ekey = self._encoder_key
        if provided is not None:
            for h, vector in zip(hashes, provided, strict=True):
                self._cache.put((tenant_key, ekey, h), vector)
            return provided, 0, 0
        found: dict[str, FloatArray] = {}
        for h in set(hashes):
            cached = self._cache.get((tenant_key, ekey, h))
            if cached is not None:
                found[h] = cached
        missing = sorted(set(hashes) - found.keys())
        for batch in _batches(missing):
            rows = await self._chunks.scan(
                keys.all_of(
                    keys.eq("tenant_key", tenant_key),
                    keys.eq("encoder_key", ekey),
                    keys.isin("content_hash", batch),
                ),
                ["content_hash", "vector"],
                limit=len(batch) * 4,
            )
            if rows.num_rows:
                vectors = _vectors(rows, self.encoder.dim)
                for h, vector in zip(rows.column("content_hash").to_pylist(), vectors, strict=True):
                    found.setdefault(h, vector)
        to_encode = [h for h in missing if h not in found]
        n_reused = sum(1 for h in hashes if h in found)
        if to_encode:
            text_of = {h: c.text for h, c in zip(hashes, chunks, strict=True)}
            encoded = await self._encode([text_of[h] for h in to_encode])
            for h, vector in zip(to_encode, encoded, strict=True):
                found[h] = vector
        for h, vector in found.items():
            self._cache.put((tenant_key, ekey, h), vector)
        out = np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)  # (n, dim)
        return out, n_reused, len(hashes) - n_reused

    async def _encode(self, texts: list[str]) -> FloatArray:
        # Encoders are CPU/GPU bound: run them off the event loop.
        try:
            raw = await asyncio.to_thread(self.encoder.encode, texts)
        except Exception as e:
            raise StoreError("the encoder failed", fingerprint=self.encoder.fingerprint) from e
        return as_embeddings(raw, n=len(texts), dim=self.encoder.dim, what="encoder output")

    def _row_info(self, segment: Segment, seg_key: str) -> SegmentRowInfo:
        scope = segment.scope
        return SegmentRowInfo(
            tenant=scope.tenant,
            session=scope.session,
            segment_id=segment.id,
            tenant_key=keys.tenant_key(scope.tenant),
            session_key=keys.session_key(scope),
            segment_key=seg_key,
            kind=segment.kind.value,
            domain=segment.domain,
            domain_key=keys.domain_key(segment.domain),
            created_at=segment.created_at,
            encoder=self.encoder.fingerprint,
            encoder_key=self._encoder_key,
        )

    @staticmethod
    def _segment_row(
        segment: Segment,
        session_id: int,
        seg_key: str,
        digest: str,
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
            "digest": digest,
        }

    # -- orphans and housekeeping ---------------------------------------------------------

    def _abandoned(self, owner: str, started_at: float) -> bool:
        if owner == self._owner:
            return False
        if time.time() - started_at > self.settings.orphan_grace_s:
            return True
        host, _, rest = owner.partition("|")
        pid_text = rest.partition("|")[0]
        if host == self._host and pid_text.isdigit():
            return not _pid_alive(int(pid_text))
        return False

    async def sweep_orphans(self, *, only: Sequence[str] | None = None) -> int:
        """Finish writes and forgets whose owner died: delete their chunk rows."""
        self._check_open()
        query = select(
            sql.pending.c.key, sql.pending.c.level, sql.pending.c.owner, sql.pending.c.started_at
        )
        if only is not None:
            query = query.where(sql.pending.c.key.in_(list(only)))
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        swept = 0
        for key, level, owner, started_at in rows:
            if not self._abandoned(owner, started_at):
                continue
            # Take the row over first, so the dead writer can never commit after us.
            async with self._writing() as conn:
                claimed = await conn.execute(
                    update(sql.pending)
                    .where(sql.pending.c.key == key, sql.pending.c.owner == owner)
                    .values(owner=self._owner, started_at=time.time())
                )
            if claimed.rowcount != 1:
                continue
            # A writer that died after finding its id already stored wrote no rows: the
            # committed segment's rows under this key must stay.
            if level != "segment" or not await self._committed(key):
                await self._chunks.delete(keys.eq(_LEVEL_COLUMN[level], key))
            await self._release(key)
            swept += 1
        if swept:
            log.info("memory.orphans_swept", count=swept)
        return swept

    async def maintain(self) -> MaintenanceReport:
        raise NotImplementedError
