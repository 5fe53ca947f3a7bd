"""What every part of the store shares: connections, the chunk table, the encoder, limits.

:class:`StoreState` is handed to each part (timeline, ledger, vectors, search, forget,
bulk) by :class:`~refrag_agent.memory.MemoryStore`; the parts call each other only through
the references they are given.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import pyarrow as pa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from refrag_agent.errors import InvalidInput, StoreError
from refrag_agent.timeline import Segment

from . import keys, sql
from .cache import EmbeddingCache
from .chunks import ChunkTable, SegmentRowInfo
from .encoding import EmbeddingFunction, EncodingQueue, FloatArray
from .settings import StoreSettings

IN_BATCH = 900  # ids per SQL ``IN (...)`` or LanceDB ``IN`` filter


def in_batches(items: Sequence[str], size: int = IN_BATCH) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def vector_matrix(rows: pa.Table, dim: int) -> FloatArray:
    """The ``vector`` column of chunk rows as one ``(n, dim)`` float32 array."""
    column = rows.column("vector").combine_chunks()
    flat = column.values.to_numpy(zero_copy_only=False)
    start = column.offset * dim
    vectors: FloatArray = flat[start : start + len(column) * dim].reshape(len(column), dim)
    return vectors  # (n, dim)


class StoreState:
    """Connections, the chunk table, the encoder and settings of one open store."""

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
        self.engines = engines
        self.chunks = chunks
        self.encoder = encoder
        self.settings = settings
        self.schema_version = schema_version
        self.read_only = read_only
        self.encoder_key = keys.encoder_key(encoder.fingerprint)
        self.cache = EmbeddingCache(settings.embedding_cache_size)
        # Every encoding of the store goes through one queue: concurrent callers' texts
        # share an encoder call.
        self.encoding = EncodingQueue(encoder)
        self.host = socket.gethostname()
        # Who owns a pending write: host, pid (to tell a dead local writer) and a nonce.
        self.owner = f"{self.host}|{os.getpid()}|{uuid.uuid4().hex}"
        self.closed = False
        # In-process writers queue here before SQL (see sql.py); VACUUM takes it too.
        self.write_lock = asyncio.Lock()

    def check_open(self) -> None:
        if self.closed:
            raise InvalidInput("the memory store is closed")

    def check_writable(self) -> None:
        if self.read_only:
            raise InvalidInput(
                "this memory store was opened read-only",
                fix="open it with MemoryStore.open(path, encoder=...) to write",
            )

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; in-process writers queue on a lock first (see sql.py)."""
        self.check_writable()
        async with self.write_lock:
            try:
                async with self.engines.writer.begin() as conn:
                    yield conn
            except IntegrityError:
                raise
            except SQLAlchemyError as e:
                raise StoreError("SQL write failed") from e

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engines.reader.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise StoreError("SQL read failed") from e

    async def encode(self, texts: Sequence[str]) -> FloatArray:
        """float32 ``(len(texts), dim)``; off the event loop, shared with concurrent
        callers (:class:`~.encoding.EncodingQueue`)."""
        return await self.encoding.encode(texts)

    def row_info(self, segment: Segment, seg_key: str) -> SegmentRowInfo:
        """What every chunk row of ``segment`` carries besides its own data."""
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
            encoder_key=self.encoder_key,
        )
