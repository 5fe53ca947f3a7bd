"""Typed results of store calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from refrag_agent.timeline import SegmentKind

if TYPE_CHECKING:
    import torch


class AppendResult(BaseModel):
    """What one append did. ``created`` is False when the segment id was already stored."""

    model_config = ConfigDict(frozen=True)

    segment_id: str
    seq: int
    n_chunks: int
    n_tokens: int
    n_reused: int
    n_encoded: int
    created: bool = True


@dataclass(frozen=True)
class ChunkBatch:
    """Chunks of several segments in (segment seq, chunk index) order.

    Row ``i`` is chunk ``chunk_index[i]`` of segment ``segment_ids[i]``; its tokens are
    ``token_values[token_offsets[i]:token_offsets[i + 1]]``.
    """

    segment_ids: list[str]
    seq: npt.NDArray[np.int64]  # (n,)
    chunk_index: npt.NDArray[np.int32]  # (n,)
    token_values: npt.NDArray[np.int32]  # (total tokens,)
    token_offsets: npt.NDArray[np.int64]  # (n + 1,)
    texts: list[str]
    content_hashes: list[str]
    embeddings: npt.NDArray[np.float32]  # (n, dim)
    encoder_fingerprint: str
    n_reencoded: int = 0
    _tokens_cache: list[list[int]] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.segment_ids)

    @property
    def token_ids(self) -> list[list[int]]:
        """Token ids per chunk, as Python lists."""
        if self._tokens_cache is None:
            offsets = self.token_offsets.tolist()
            values = self.token_values.tolist()
            cached = [values[offsets[i] : offsets[i + 1]] for i in range(len(self))]
            object.__setattr__(self, "_tokens_cache", cached)
        assert self._tokens_cache is not None
        return self._tokens_cache

    @property
    def n_tokens(self) -> int:
        return int(self.token_values.shape[0])

    def embeddings_tensor(self) -> torch.Tensor:
        """The embeddings as a float32 tensor sharing memory with the array."""
        import torch

        return torch.from_numpy(self.embeddings)  # (n, dim)


class SearchHit(BaseModel):
    """One chunk found by search; ``score`` is its reciprocal-rank-fusion score."""

    model_config = ConfigDict(frozen=True)

    segment_id: str
    session: str
    seq: int
    chunk_index: int
    text: str
    kind: SegmentKind
    domain: str
    created_at: datetime
    score: float
    vector_rank: int | None = None
    text_rank: int | None = None


class StoreStats(BaseModel):
    """Counts for the whole store or one scope."""

    model_config = ConfigDict(frozen=True)

    tenants: int
    sessions: int
    segments: int
    chunks: int
    stale_chunks: int
    pending_writes: int
    bytes_on_disk: int | None
    schema_version: int
    lance_version: int
    encoder_fingerprint: str


class MaintenanceReport(BaseModel):
    """What one housekeeping round did."""

    model_config = ConfigDict(frozen=True)

    orphans_swept: int
    indexes_created: list[str]
    compacted: bool
    seconds: float
    # Whether the round erased what forgets left in the files (see forget_tenant), and how
    # many chunk rows it wrote again for that.
    purged: bool = False
    rows_rewritten: int = 0
