"""Bulk ingest: many segments in a few commits, with the guarantees of one append."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError

from refrag_agent.errors import InvalidInput, ScopeError, StoreError
from refrag_agent.timeline import Chunk, Scope, Segment

from . import keys, sql
from .chunks import build_rows
from .encoding import FloatArray, as_embeddings
from .ledger import PendingLedger
from .records import AppendResult
from .segments import SegmentTable, digest, segment_row
from .state import StoreState, in_batches
from .validation import check_segment
from .vectors import Vectors


class BulkWriter:
    """Many segments in a few commits, with the guarantees of one append."""

    def __init__(
        self,
        state: StoreState,
        segments: SegmentTable,
        ledger: PendingLedger,
        vectors: Vectors,
    ) -> None:
        self.state = state
        self.segments = segments
        self.ledger = ledger
        self.vectors = vectors

    async def append_many(
        self,
        items: Sequence[tuple[Segment, Sequence[Chunk], Any]],
    ) -> list[AppendResult]:
        """Bulk ingest: many ``(segment, chunks, embeddings or None)`` in a few commits.

        Same guarantees as :meth:`append` (all checks before any write, pending rows, chunk
        rows before segment rows); segment ids already stored are replayed, not rewritten.
        Results come back in the order of ``items``.
        """
        settings, dim = self.state.settings, self.state.encoder.dim
        prepared = []
        seen: set[str] = set()
        for segment, chunks, embeddings in items:
            hashes = check_segment(
                segment,
                chunks,
                max_chars=settings.max_segment_chars,
                max_chunks=settings.max_chunks_per_segment,
            )
            provided = (
                None if embeddings is None else as_embeddings(embeddings, n=len(chunks), dim=dim)
            )
            seg_key = keys.segment_key(segment.scope, segment.id)
            if seg_key in seen:
                raise InvalidInput("segment id given twice", segment_id=segment.id[:64])
            seen.add(seg_key)
            prepared.append((segment, chunks, hashes, provided, seg_key))
        session_ids = {}
        for segment, *_ in prepared:
            if segment.scope not in session_ids:
                session_ids[segment.scope] = await self.segments.session_id(segment.scope)
        results: dict[str, AppendResult] = {}
        todo = []
        for segment, chunks, hashes, provided, seg_key in prepared:
            existing = await self.segments.existing(seg_key, digest(segment, chunks), segment.id)
            if existing is not None:
                results[seg_key] = existing
            else:
                todo.append((segment, chunks, hashes, provided, seg_key))
        if todo:
            await self._append_new(todo, session_ids, results)
        return [results[seg_key] for *_, seg_key in prepared]

    async def _append_new(
        self,
        todo: list[tuple[Segment, Sequence[Chunk], list[str], FloatArray | None, str]],
        session_ids: dict[Scope, int],
        results: dict[str, AppendResult],
    ) -> None:
        tables = []
        counts = {}
        for segment, chunks, hashes, provided, seg_key in todo:
            scope = segment.scope
            vectors, n_reused, n_encoded = await self.vectors.resolve(
                keys.tenant_key(scope.tenant), hashes, chunks, provided
            )
            counts[seg_key] = (n_reused, n_encoded)
            info = self.state.row_info(segment, seg_key)
            tables.append(build_rows(info, chunks, hashes, vectors))
        seg_keys = [seg_key for *_, seg_key in todo]
        now, owner = time.time(), self.state.owner
        try:
            async with self.state.writing() as conn:
                await conn.execute(
                    insert(sql.pending),
                    [
                        {"key": k, "level": "segment", "owner": owner, "started_at": now}
                        for k in seg_keys
                    ],
                )
        except IntegrityError as e:
            raise StoreError("another writer is storing some of these segment ids; retry") from e
        try:
            for start in range(0, len(tables), 256):
                await self.state.chunks.add(pa.concat_tables(tables[start : start + 256]))
            async with self.state.writing() as conn:
                for batch in in_batches(seg_keys):
                    taken = await conn.execute(
                        delete(sql.pending).where(
                            sql.pending.c.key.in_(batch), sql.pending.c.owner == owner
                        )
                    )
                    if taken.rowcount != len(batch):
                        raise StoreError("pending writes were swept as orphans; append again")
                per_session: dict[int, list[int]] = {}
                for position, (segment, *_rest) in enumerate(todo):
                    per_session.setdefault(session_ids[segment.scope], []).append(position)
                seqs: dict[int, int] = {}
                for session_id, positions in per_session.items():
                    next_seq = (
                        await conn.execute(
                            update(sql.sessions)
                            .where(sql.sessions.c.id == session_id)
                            .values(next_seq=sql.sessions.c.next_seq + len(positions))
                            .returning(sql.sessions.c.next_seq)
                        )
                    ).scalar_one_or_none()
                    if next_seq is None:
                        raise ScopeError("a scope was forgotten during the append")
                    first = int(next_seq) - len(positions)
                    for offset, position in enumerate(positions):
                        seqs[position] = first + offset
                rows = []
                for position, (segment, chunks, _hashes, _provided, seg_key) in enumerate(todo):
                    rows.append(
                        segment_row(
                            segment,
                            session_ids[segment.scope],
                            seg_key,
                            digest(segment, chunks),
                            seq=seqs[position],
                            n_tokens=sum(len(c.token_ids) for c in chunks),
                            n_chunks=len(chunks),
                        )
                    )
                await conn.execute(insert(sql.segments), rows)
        except BaseException:
            for seg_key in seg_keys:
                await asyncio.shield(self.ledger.abandon(seg_key))
            raise
        for position, (segment, chunks, _hashes, _provided, seg_key) in enumerate(todo):
            n_reused, n_encoded = counts[seg_key]
            results[seg_key] = AppendResult(
                segment_id=segment.id,
                seq=seqs[position],
                n_chunks=len(chunks),
                n_tokens=sum(len(c.token_ids) for c in chunks),
                n_reused=n_reused,
                n_encoded=n_encoded,
            )
