"""Stored segments and their fetched chunks as the context builder's input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from refrag_agent.context.build import ChunkSlot, ContextSegment
from refrag_agent.memory import ChunkBatch
from refrag_agent.timeline import Segment


def concat_batches(batches: Sequence[ChunkBatch]) -> ChunkBatch:
    """Chunks fetched from several sessions of one tenant, as one batch."""
    if len(batches) == 1:
        return batches[0]
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for b in batches:
        offsets.append(b.token_offsets[1:] + base)
        base += int(b.token_offsets[-1])
    return ChunkBatch(
        segment_ids=[sid for b in batches for sid in b.segment_ids],
        seq=np.concatenate([b.seq for b in batches]),
        chunk_index=np.concatenate([b.chunk_index for b in batches]),
        token_values=np.concatenate([b.token_values for b in batches]),
        token_offsets=np.concatenate(offsets),
        texts=[t for b in batches for t in b.texts],
        content_hashes=[h for b in batches for h in b.content_hashes],
        embeddings=np.concatenate([b.embeddings for b in batches]),
        encoder_fingerprint=batches[0].encoder_fingerprint,
        n_reencoded=sum(b.n_reencoded for b in batches),
    )


def stored_context(
    ordered: Sequence[Segment],
    batch: ChunkBatch,
    *,
    pinned: set[str],
    retrieved: set[str],
) -> tuple[list[ContextSegment], torch.Tensor]:
    """``ordered`` segments with their chunks from ``batch``, and the embedding table with
    one row per chunk in the same order (the draft's chunk indices). Segments without
    stored chunks are left out."""
    rows_of: dict[str, list[int]] = {}
    for row, sid in enumerate(batch.segment_ids):
        rows_of.setdefault(sid, []).append(row)
    token_ids = batch.token_ids
    out: list[ContextSegment] = []
    rows: list[int] = []
    for seg in ordered:
        mine = rows_of.get(seg.id)
        if not mine:
            continue
        slots = tuple(
            ChunkSlot(
                tuple(token_ids[r]),
                len(token_ids[r]),
                int(batch.chunk_index[r]),
                batch.texts[r],
            )
            for r in mine
        )
        out.append(
            ContextSegment(
                id=seg.id,
                kind=seg.kind,
                domain=seg.domain,
                seq=seg.seq,
                chunks=slots,
                pinned=seg.id in pinned,
                retrieved=seg.id in retrieved,
            )
        )
        rows.extend(mine)
    table = batch.embeddings_tensor()[torch.tensor(rows, dtype=torch.long)]  # (n, d)
    return out, table
