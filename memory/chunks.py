"""The LanceDB chunk table: one row per chunk with its tokens, text and embedding.

Rows are written by group commit: appends waiting at the same moment go into LanceDB as
one ``add`` (one new version, one fragment), so 50 concurrent writers make a handful of
commits instead of 50 conflicting ones. Reads of segments' rows are grouped the same way
(:meth:`ChunkTable.rows_of`): concurrent sessions' fetches make one scan.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import FTS, Bitmap, BTree, IvfPq

from refrag_agent.errors import InvalidInput, StoreError
from refrag_agent.logs import get_logger
from refrag_agent.timeline import Chunk

from . import keys
from .compactor import Compactor
from .encoding import FloatArray
from .grouped import Grouped

log = get_logger(__name__)
T = TypeVar("T")

TABLE = "chunks"
# High-cardinality keys get B-trees; low-cardinality ones (every query filters on the tenant
# and the encoder) get bitmaps, which stay cheap when a filter matches most rows.
BTREE_INDEXED = ("segment_key", "session_key", "content_hash")
BITMAP_INDEXED = ("tenant_key", "encoder_key", "kind")
_COMMIT_ATTEMPTS = 6
_READ_ATTEMPTS = 4
_REWRITE_BATCH = 65_536  # rows per commit when a fragment's rows are written again
_GROUP_KEYS = 900  # segment keys of one grouped read, at most (as IN_BATCH in state.py)
# Rows per IVF partition of the vector index. A query scans nprobes (LanceDB's default 20)
# partitions and checks each row against the scope prefilter, so its cost follows this
# size, not the table's: LanceDB's default (8,192) made a tenant-wide query at 1M rows
# compare 164K rows; 2,048 (near the square root of 1M that LanceDB used to default to)
# cuts the index's part of that query about 3x (17 ms to 6 ms in its plan), at an index
# build of about the same length.
ANN_PARTITION_ROWS = 2048


def chunk_schema(dim: int) -> pa.Schema:
    utc = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            pa.field("chunk_key", pa.string(), nullable=False),
            pa.field("tenant", pa.string(), nullable=False),
            pa.field("session", pa.string(), nullable=False),
            pa.field("segment_id", pa.string(), nullable=False),
            pa.field("tenant_key", pa.string(), nullable=False),
            pa.field("session_key", pa.string(), nullable=False),
            pa.field("segment_key", pa.string(), nullable=False),
            pa.field("chunk_index", pa.int32(), nullable=False),
            pa.field("token_ids", pa.list_(pa.int32()), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("encoder", pa.string(), nullable=False),
            pa.field("encoder_key", pa.string(), nullable=False),
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("domain", pa.string(), nullable=False),
            pa.field("domain_key", pa.string(), nullable=False),
            pa.field("created_at", utc, nullable=False),
        ]
    )


@dataclass(frozen=True)
class _Read:
    """One caller's read of some segments' rows (:meth:`ChunkTable.rows_of`)."""

    session_key: str
    seg_keys: list[str]


@dataclass(frozen=True)
class SegmentRowInfo:
    """The per-segment values every chunk row of a segment repeats."""

    tenant: str
    session: str
    segment_id: str
    tenant_key: str
    session_key: str
    segment_key: str
    kind: str
    domain: str
    domain_key: str
    created_at: datetime
    encoder: str
    encoder_key: str


def build_rows(
    info: SegmentRowInfo, chunks: Sequence[Chunk], hashes: Sequence[str], vectors: FloatArray
) -> pa.Table:
    """Arrow rows for one segment's chunks; ``vectors`` is float32 (n, dim)."""
    n = vectors.shape[0]
    lengths = np.fromiter((len(c.token_ids) for c in chunks), dtype=np.int32, count=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(
        (t for c in chunks for t in c.token_ids), dtype=np.int32, count=int(offsets[-1])
    )
    return rows_from_arrays(
        info,
        chunk_index=np.fromiter((c.index for c in chunks), dtype=np.int32, count=n),
        token_offsets=offsets,
        token_values=values,
        texts=[c.text for c in chunks],
        hashes=list(hashes),
        vectors=vectors,
    )


def rows_from_arrays(
    info: SegmentRowInfo,
    *,
    chunk_index: np.ndarray,
    token_offsets: np.ndarray,
    token_values: np.ndarray,
    texts: list[str],
    hashes: list[str],
    vectors: FloatArray,
    segment_keys: list[str] | None = None,
    segment_ids: list[str] | None = None,
) -> pa.Table:
    """Arrow rows from column arrays; also used by the benchmark's bulk loader.

    ``segment_keys``/``segment_ids`` override the single segment of ``info`` per row.
    """
    n, dim = vectors.shape
    seg_keys = segment_keys if segment_keys is not None else [info.segment_key] * n
    seg_ids = segment_ids if segment_ids is not None else [info.segment_id] * n
    chunk_keys = [f"{k}{int(i):06d}" for k, i in zip(seg_keys, chunk_index.tolist(), strict=True)]

    def repeat(value: str) -> pa.Array:
        return pa.array([value] * n, pa.string())

    tokens = pa.ListArray.from_arrays(
        pa.array(token_offsets.astype(np.int32)), pa.array(token_values.astype(np.int32))
    )
    vector = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
    created = pa.array([info.created_at] * n, pa.timestamp("us", tz="UTC"))
    columns = [
        pa.array(chunk_keys, pa.string()),
        repeat(info.tenant),
        repeat(info.session),
        pa.array(seg_ids, pa.string()),
        repeat(info.tenant_key),
        repeat(info.session_key),
        pa.array(seg_keys, pa.string()),
        pa.array(chunk_index.astype(np.int32)),
        tokens,
        pa.array(texts, pa.string()),
        vector,
        repeat(info.encoder),
        repeat(info.encoder_key),
        pa.array(hashes, pa.string()),
        repeat(info.kind),
        repeat(info.domain),
        repeat(info.domain_key),
        created,
    ]
    return pa.Table.from_arrays(columns, schema=chunk_schema(dim))


class ChunkTable:
    """The chunk rows of one store, on a LanceDB table."""

    def __init__(
        self,
        db: Any,
        table: Any,
        *,
        dim: int,
        uri: str,
        read_only: bool = False,
        connect: Callable[[], Awaitable[Any]] | None = None,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        self._db = db
        self._table = table
        self._connect = connect
        self._storage_options = storage_options
        # The child process that runs optimize (not for an in-memory table); see optimize.
        self._compactor = (
            None
            if uri.startswith("memory://")
            else Compactor(uri, TABLE, storage_options=storage_options)
        )
        self.dim = dim
        self.uri = uri
        self.read_only = read_only
        # Told the rows of each commit of this table (the store's housekeeping counts them).
        self.on_commit: Callable[[int], None] | None = None
        self._waiting: list[tuple[pa.Table, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Reads of segments' rows waiting at the same moment, by columns: one scan.
        self._reads: Grouped[tuple[str, ...], _Read, pa.Table] = Grouped(
            self._read_together, size=lambda r: len(r.seg_keys), limit=_GROUP_KEYS
        )
        self._has_fts = False
        self._index_lock = asyncio.Lock()
        # Odd while an optimize runs; it moves on at its start and at its end (see _read).
        self._optimize_epoch = 0

    @classmethod
    async def open(
        cls,
        uri: str,
        *,
        dim: int,
        storage_options: dict[str, str] | None = None,
        read_consistency: timedelta | None = timedelta(0),
        read_only: bool = False,
    ) -> ChunkTable:
        """Open the chunk table at ``uri``, creating it unless ``read_only``.

        A read-only table creates nothing, indexes included: text search sees only what
        was indexed by a writable store.
        """

        async def connect() -> Any:
            return await lancedb.connect_async(
                uri, storage_options=storage_options, read_consistency_interval=read_consistency
            )

        try:
            db = await connect()
            try:
                table = await db.open_table(TABLE)
            except ValueError:
                if read_only:
                    raise
                table = await db.create_table(TABLE, schema=chunk_schema(dim), exist_ok=True)
            schema = await table.schema()
        except Exception as e:
            raise StoreError("cannot open the LanceDB chunk table", uri=uri) from e
        width = schema.field("vector").type.list_size
        if width != dim:
            raise InvalidInput(
                "the encoder's width does not match the stored embeddings",
                encoder_dim=dim,
                store_dim=width,
                uri=uri,
            )
        return cls(
            db,
            table,
            dim=dim,
            uri=uri,
            read_only=read_only,
            connect=connect,
            storage_options=storage_options,
        )

    # -- writes ---------------------------------------------------------------------------

    async def add(self, rows: pa.Table) -> None:
        """Append rows; returns once they are committed (grouped with concurrent adds)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._waiting:
            # Yield once so that appends started in the same tick join this commit.
            await asyncio.sleep(0)
            batch, self._waiting = self._waiting, []
            rows = pa.concat_tables([rows for rows, _ in batch])
            try:
                await self._retry(self._table.add, rows)
            except Exception as e:
                error = StoreError("cannot write chunk rows to LanceDB", uri=self.uri)
                error.__cause__ = e
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                self._committed(rows.num_rows)
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _retry(self, call: Any, *args: Any) -> Any:
        # Commits from other processes can conflict; LanceDB retries some itself, we add
        # a few more with backoff before failing.
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                return await call(*args)
            except Exception as e:
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
                log.warning("memory.lance_retry", error=repr(e), attempt=attempt)
                await asyncio.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable")

    def _committed(self, rows: int) -> None:
        if self.on_commit is not None:
            self.on_commit(rows)

    async def delete(
        self, where: str, *, record: Callable[[set[int]], Awaitable[None]] | None = None
    ) -> None:
        """Delete the rows matching ``where``; ``record`` is given their fragments first.

        A delete only marks rows in a deletion file: their text stays in the fragment's
        data file until :meth:`rewrite_fragments` moves the fragment's other rows out. With
        ``record``, each round deletes only rows of the fragments it recorded, so rows that
        a concurrent compaction moved to a new fragment are found there in the next round.
        """
        if record is None:
            await self._delete(where)
            return
        for _round in range(_COMMIT_ATTEMPTS):
            fragments = await self._fragments(where)
            if not fragments:
                return
            await record(fragments)
            await self._delete(keys.all_of(where, keys.in_fragments(fragments)))
        raise StoreError("chunk rows kept moving while they were deleted; retry", uri=self.uri)

    async def _delete(self, where: str) -> None:
        try:
            await self._retry(self._table.delete, where)
        except Exception as e:
            raise StoreError("cannot delete chunk rows from LanceDB", uri=self.uri) from e
        self._committed(0)

    async def _fragments(self, where: str) -> set[int]:
        """Ids of the fragments holding rows that match ``where``."""
        found = await self._read(
            "cannot read chunk rows from LanceDB",
            lambda table: table.query().where(where).with_row_id().select([]).to_arrow(),
        )
        return {row_id >> 32 for row_id in found.column("_rowid").to_pylist()}

    async def rewrite_fragments(self, fragments: Iterable[int]) -> int:
        """Write the live rows of ``fragments`` again elsewhere; return how many moved.

        A fragment whose every row is deleted leaves the table, so its data file (with the
        text of rows deleted before) belongs to old versions only, which cleanup removes.
        """
        columns = [f.name for f in chunk_schema(self.dim)]
        moved = 0
        for fragment in sorted(fragments):
            while True:
                rows = await self.scan(keys.in_fragments([fragment]), columns, limit=_REWRITE_BATCH)
                if rows.num_rows == 0:
                    break
                # A row whose embedding was replaced meanwhile has already left the fragment.
                merge = (
                    self._table.merge_insert("chunk_key")
                    .when_matched_update_all(where="target.encoder_key = source.encoder_key")
                    .execute
                )
                try:
                    result = await self._retry(merge, rows)
                except Exception as e:
                    raise StoreError("cannot rewrite chunk rows in LanceDB", uri=self.uri) from e
                if result.num_updated_rows == 0:
                    break
                moved += int(result.num_updated_rows)
        return moved

    async def replace_vectors(self, rows: pa.Table) -> None:
        """Overwrite vector and encoder columns of existing rows (matched on chunk_key)."""

        async def merge(data: pa.Table) -> Any:
            return await (
                self._table.merge_insert("chunk_key").when_matched_update_all().execute(data)
            )

        try:
            await self._retry(merge, rows)
        except Exception as e:
            raise StoreError("cannot update embeddings in LanceDB", uri=self.uri) from e
        self._committed(0)

    # -- reads ----------------------------------------------------------------------------

    async def _read(self, what: str, run: Callable[[Any], Awaitable[T]]) -> T:
        """``run(table)``, again on the newest version when an optimize dropped files of
        the version it was reading.

        A read reads the version that was the newest when it started. The optimize of a
        housekeeping round commits newer ones, then drops the files that only older
        versions use (at once after a forget): a read still on one of those fails. It
        is run again, whole, on the version that is now the newest, so it still sees one
        version. A read that fails while no optimize ran is not retried.
        """
        for attempt in range(_READ_ATTEMPTS):
            epoch = self._optimize_epoch
            try:
                return await run(self._table)
            except Exception as e:
                optimized = epoch % 2 == 1 or self._optimize_epoch != epoch
                if not optimized or attempt == _READ_ATTEMPTS - 1:
                    raise StoreError(what, uri=self.uri) from e
                log.info("memory.read_retried", attempt=attempt + 1, error=repr(e))
                await asyncio.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    async def scan(self, where: str, columns: list[str], *, limit: int | None = None) -> pa.Table:
        def run(table: Any) -> Awaitable[pa.Table]:
            query = table.query().where(where).select(columns)
            if limit is not None:
                query = query.limit(limit)
            return query.to_arrow()  # type: ignore[no-any-return]

        return await self._read("cannot read chunk rows from LanceDB", run)

    async def rows_of(
        self, session_key: str, seg_keys: Sequence[str], columns: Sequence[str]
    ) -> pa.Table:
        """``columns`` of the rows of some segments of one session, in no set order.

        Reads waiting at the same moment (other sessions' fetches) go into one scan, each
        caller's own part of the filter kept whole: ``(session = s AND segment IN (...))``
        for each, joined by OR; each caller gets the rows of its own segment keys.
        """
        if len(seg_keys) > _GROUP_KEYS:  # too many for one filter: alone, in batches
            where = keys.eq("session_key", session_key)
            parts = [
                await self.scan(
                    keys.all_of(where, keys.isin("segment_key", seg_keys[i : i + _GROUP_KEYS])),
                    list(columns),
                )
                for i in range(0, len(seg_keys), _GROUP_KEYS)
            ]
            return pa.concat_tables(parts)
        return await self._reads.call(tuple(columns), _Read(session_key, list(seg_keys)))

    async def _read_together(self, columns: tuple[str, ...], reads: list[_Read]) -> list[pa.Table]:
        where = keys.any_of(
            *(
                keys.all_of(
                    keys.eq("session_key", r.session_key), keys.isin("segment_key", r.seg_keys)
                )
                for r in reads
            )
        )
        rows = await self.scan(where, list(columns))
        column = rows.column("segment_key")
        return [
            rows.filter(pc.is_in(column, value_set=pa.array(r.seg_keys, pa.string())))
            for r in reads
        ]

    async def count(self, where: str | None = None) -> int:
        rows = await self._read(
            "cannot count chunk rows in LanceDB", lambda table: table.count_rows(where)
        )
        return int(rows)

    async def vector_search(
        self, vector: FloatArray, *, where: str, columns: list[str], limit: int
    ) -> pa.Table:
        def run(table: Any) -> Awaitable[pa.Table]:
            return (  # type: ignore[no-any-return]
                table.query()
                .nearest_to(vector)
                .distance_type("cosine")
                .where(where)
                .select([*columns, "_distance"])
                .limit(limit)
                .to_arrow()
            )

        return await self._read("vector search failed", run)

    async def text_search(
        self, text: str, *, where: str, columns: list[str], limit: int
    ) -> pa.Table | None:
        """Full-text search, or None while the table has no full-text index yet."""
        if not self._has_fts and not await self._fts_ready():
            return None

        def run(table: Any) -> Awaitable[pa.Table]:
            return (  # type: ignore[no-any-return]
                table.query()
                .nearest_to_text(text, columns=["text"])
                .where(where)
                .select([*columns, "_score"])
                .limit(limit)
                .to_arrow()
            )

        return await self._read("full-text search failed", run)

    async def _fts_ready(self) -> bool:
        names = {tuple(ix.columns): ix.index_type for ix in await self._table.list_indices()}
        self._has_fts = names.get(("text",)) in ("FTS", "INVERTED")
        if not self._has_fts and not self.read_only and await self.count() > 0:
            await self.ensure_indexes(ann_min_rows=None)
        return self._has_fts

    # -- housekeeping ---------------------------------------------------------------------

    async def ensure_indexes(self, *, ann_min_rows: int | None) -> list[str]:
        """Create missing indexes; the vector index once ``ann_min_rows`` rows exist."""
        created: list[str] = []
        async with self._index_lock:
            try:
                rows = await self._table.count_rows()
                if rows == 0:
                    return created
                existing = {next(iter(ix.columns)) for ix in await self._table.list_indices()}
                for column in (*BTREE_INDEXED, *BITMAP_INDEXED):
                    if column not in existing:
                        config = BTree() if column in BTREE_INDEXED else Bitmap()
                        await self._table.create_index(column, config=config)
                        created.append(column)
                if "text" not in existing:
                    await self._table.create_index("text", config=FTS())
                    created.append("text")
                if "vector" not in existing and ann_min_rows is not None and rows >= ann_min_rows:
                    await self._table.create_index(
                        "vector",
                        config=IvfPq(
                            distance_type="cosine", target_partition_size=ANN_PARTITION_ROWS
                        ),
                    )
                    created.append("vector")
            except Exception as e:
                raise StoreError("cannot build LanceDB indexes", uri=self.uri) from e
            self._has_fts = self._has_fts or "text" in existing or "text" in created
        if created:
            log.info("memory.indexes_created", columns=created, rows=rows)
        return created

    async def rebuild_text_index(self) -> None:
        """Build the full-text index again from the live rows (dropping deleted rows' terms)."""
        async with self._index_lock:
            try:
                if await self._table.count_rows() == 0:
                    return
                await self._table.create_index("text", config=FTS(), replace=True)
            except Exception as e:
                raise StoreError("cannot rebuild the full-text index", uri=self.uri) from e
        self._has_fts = True

    async def optimize(self, *, cleanup_older_than: timedelta) -> None:
        """Compact small fragments, fold new rows into indexes, drop old versions, then
        reopen the table (see :meth:`reopen`).

        The work runs in a child process at a lower priority, started on the first round
        and kept for the next ones (see :mod:`.compactor`), so that appends meanwhile
        neither queue behind it in this process's LanceDB threads nor share the cores
        evenly with it. An in-memory table, which no other process can open, is
        optimized here, and so is a round that comes while the child is still starting
        (it takes a second or more, which would make the round and the rest after it
        that much longer).
        """
        self._optimize_epoch += 1
        try:
            if self._compactor is None or not await self._compactor.ready():
                await self._retry(
                    lambda: self._table.optimize(cleanup_older_than=cleanup_older_than)
                )
            else:
                stats = await self._compactor.optimize(cleanup_older_than=cleanup_older_than)
                log.debug("memory.optimized", **stats)
        except Exception as e:
            raise StoreError("LanceDB optimize failed", uri=self.uri) from e
        finally:
            self._optimize_epoch += 1
        await self.reopen()

    async def reopen(self) -> None:
        """Swap in a new connection and table object.

        LanceDB caches index readers and manifests per connection and never lets go of
        those of old versions: without this, every maintenance round would leave open
        handles (on files that cleanup deleted) and memory behind. Calls already running
        finish on the old objects, which are released after them.
        """
        if self._connect is None:
            return
        try:
            db = await self._connect()
            table = await db.open_table(TABLE)
        except Exception as e:
            raise StoreError("cannot reopen the LanceDB chunk table", uri=self.uri) from e
        self._db, self._table = db, table

    async def version(self) -> int:
        return int(await self._table.version())

    def bytes_on_disk(self) -> int | None:
        path = Path(self.uri)
        if "://" in self.uri or not path.exists():
            return None
        total = 0
        for root, _dirs, files in os.walk(path):
            for name in files:
                try:
                    total += (Path(root) / name).stat().st_size
                except OSError:
                    continue
        return total

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._compactor is not None:
            await self._compactor.close()
        try:
            self._table.close()
        except Exception as e:
            log.warning("memory.lance_close_failed", error=repr(e))
