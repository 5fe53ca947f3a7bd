"""Chunk embeddings: reused from the cache or the chunk table, encoded when missing, and
re-encoded when another encoder wrote them (stale rows are never mixed in)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from refrag_agent.logs import get_logger
from refrag_agent.timeline import Chunk

from . import keys
from .chunks import chunk_schema
from .encoding import FloatArray
from .grouped import Grouped
from .state import StoreState, in_batches, vector_matrix

log = get_logger(__name__)


class Vectors:
    """Where a chunk's embedding comes from, and how stale ones are replaced."""

    def __init__(self, state: StoreState) -> None:
        self.state = state
        # Lookups of stored embeddings waiting at the same moment: one scan per tenant.
        self._lookups: Grouped[str, list[str], dict[str, FloatArray]] = Grouped(self._look_up)

    async def resolve(
        self,
        tenant_key: str,
        hashes: Sequence[str],
        chunks: Sequence[Chunk],
        provided: FloatArray | None,
    ) -> tuple[FloatArray, int, int]:
        """Embeddings for every chunk, and how many were reused and encoded."""
        state = self.state
        ekey, cache = state.encoder_key, state.cache
        if provided is not None:
            for h, vector in zip(hashes, provided, strict=True):
                cache.put((tenant_key, ekey, h), vector)
            return provided, 0, 0
        found: dict[str, FloatArray] = {}
        for h in set(hashes):
            cached = cache.get((tenant_key, ekey, h))
            if cached is not None:
                found[h] = cached
        missing = sorted(set(hashes) - found.keys())
        if missing:
            for h, vector in (await self._stored(tenant_key, missing)).items():
                found.setdefault(h, vector)
        to_encode = [h for h in missing if h not in found]
        n_reused = sum(1 for h in hashes if h in found)
        if to_encode:
            text_of = {h: c.text for h, c in zip(hashes, chunks, strict=True)}
            encoded = await state.encode([text_of[h] for h in to_encode])
            for h, vector in zip(to_encode, encoded, strict=True):
                found[h] = vector
        for h, vector in found.items():
            cache.put((tenant_key, ekey, h), vector)
        out = np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)  # (n, dim)
        return out, n_reused, len(hashes) - n_reused

    async def _stored(self, tenant_key: str, hashes: list[str]) -> dict[str, FloatArray]:
        """Embeddings the chunk table holds for some content hashes of a tenant (this
        encoder's). Lookups waiting at the same moment go into one scan per tenant, as
        chunk rows go into one commit (:meth:`ChunkTable.add`)."""
        return await self._lookups.call(tenant_key, hashes)

    async def _look_up(
        self, tenant_key: str, requests: list[list[str]]
    ) -> list[dict[str, FloatArray]]:
        stored = await self._scan(tenant_key, sorted({h for hashes in requests for h in hashes}))
        return [{h: stored[h] for h in hashes if h in stored} for hashes in requests]

    async def _scan(self, tenant_key: str, hashes: Sequence[str]) -> dict[str, FloatArray]:
        state = self.state
        found: dict[str, FloatArray] = {}
        for batch in in_batches(hashes):
            rows = await state.chunks.scan(
                keys.all_of(
                    keys.eq("tenant_key", tenant_key),
                    keys.eq("encoder_key", state.encoder_key),
                    keys.isin("content_hash", batch),
                ),
                ["content_hash", "vector"],
                limit=len(batch) * 4,
            )
            if rows.num_rows:
                vectors = vector_matrix(rows, state.encoder.dim)
                for h, vector in zip(rows.column("content_hash").to_pylist(), vectors, strict=True):
                    found.setdefault(h, vector)
        return found

    async def rewrite(self, seg_keys: Sequence[str] | None, scope_filter: str | None) -> int:
        """Re-encode stale rows (of some segments, or matching a filter); return how many."""
        state = self.state
        clauses = [keys.ne("encoder_key", state.encoder_key), scope_filter]
        if seg_keys is not None:
            clauses.append(keys.isin("segment_key", seg_keys))
        columns = [f.name for f in chunk_schema(state.chunks.dim)]
        rows = await state.chunks.scan(keys.all_of(*clauses), columns, limit=4096)
        if rows.num_rows == 0:
            return 0
        fresh = await state.encode(rows.column("text").to_pylist())
        dim = state.encoder.dim
        vector = pa.FixedSizeListArray.from_arrays(pa.array(fresh.reshape(-1)), dim)
        n = rows.num_rows
        rows = rows.set_column(rows.schema.get_field_index("vector"), "vector", vector)
        rows = rows.set_column(
            rows.schema.get_field_index("encoder"),
            "encoder",
            pa.array([state.encoder.fingerprint] * n, pa.string()),
        )
        rows = rows.set_column(
            rows.schema.get_field_index("encoder_key"),
            "encoder_key",
            pa.array([state.encoder_key] * n, pa.string()),
        )
        await state.chunks.replace_vectors(rows)
        return int(n)

    async def reencode(self, scope_filter: str | None) -> int:
        """Re-encode every stale row matching ``scope_filter`` (all rows for None)."""
        total = 0
        while True:
            done = await self.rewrite(None, scope_filter)
            if done == 0:
                break
            total += done
        log.info("memory.reencoded", chunks=total, fingerprint=self.state.encoder.fingerprint)
        return total
