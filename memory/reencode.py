"""Stale embeddings: rows written by another encoder are re-encoded, never mixed in."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from refrag_agent.logs import get_logger
from refrag_agent.timeline import Scope

from . import keys
from .chunks import ChunkTable, chunk_schema
from .core import StoreCore

log = get_logger(__name__)


class ReencodeMixin(StoreCore):
    async def _rewrite_vectors(
        self, seg_keys: Sequence[str] | None, scope_filter: str | None
    ) -> int:
        """Re-encode stale rows (of some segments, or matching a filter); return how many."""
        clauses = [keys.ne("encoder_key", self._encoder_key), scope_filter]
        if seg_keys is not None:
            clauses.append(keys.isin("segment_key", seg_keys))
        rows = await self._chunks.scan(
            keys.all_of(*clauses), [f.name for f in _schema_fields(self._chunks)], limit=4096
        )
        if rows.num_rows == 0:
            return 0
        fresh = await self._encode(rows.column("text").to_pylist())
        dim = self.encoder.dim
        vector = pa.FixedSizeListArray.from_arrays(pa.array(fresh.reshape(-1)), dim)
        n = rows.num_rows
        rows = rows.set_column(rows.schema.get_field_index("vector"), "vector", vector)
        rows = rows.set_column(
            rows.schema.get_field_index("encoder"),
            "encoder",
            pa.array([self.encoder.fingerprint] * n, pa.string()),
        )
        rows = rows.set_column(
            rows.schema.get_field_index("encoder_key"),
            "encoder_key",
            pa.array([self._encoder_key] * n, pa.string()),
        )
        await self._chunks.replace_vectors(rows)
        return int(n)

    async def reencode(self, *, scope: Scope | None = None) -> int:
        """Re-encode every chunk embedded by another encoder (of one scope, or all)."""
        self._check_open()
        scope_filter = None
        if scope is not None:
            await self._session_id(scope)
            scope_filter = keys.eq("session_key", keys.session_key(scope))
        total = 0
        while True:
            done = await self._rewrite_vectors(None, scope_filter)
            if done == 0:
                break
            total += done
        log.info("memory.reencoded", chunks=total, fingerprint=self.encoder.fingerprint)
        return total


def _schema_fields(chunks: ChunkTable) -> list[pa.Field]:
    return list(chunk_schema(chunks.dim))
