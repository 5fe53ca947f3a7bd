"""Settings of a memory store."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StoreSettings(BaseModel):
    """Limits, timeouts and housekeeping of one store; every field has a working default."""

    model_config = ConfigDict(frozen=True)

    max_segment_chars: int = Field(default=1_000_000, ge=1)
    max_chunks_per_segment: int = Field(default=65_536, ge=1)
    busy_timeout_s: float = Field(default=30.0, gt=0)
    # A pending write older than this is an orphan even if its owner looks alive.
    orphan_grace_s: float = Field(default=600.0, ge=0)
    # Background compaction, index upkeep and orphan sweeps; None turns the task off. A
    # round starts after this many seconds, chunk rows added, or LanceDB commits (table
    # versions; each append is also a new fragment), whichever comes first.
    maintenance_interval_s: float | None = Field(default=300.0, gt=0)
    maintenance_after_rows: int = Field(default=10_000, ge=1)
    maintenance_after_versions: int = Field(default=100, ge=1)
    ann_min_rows: int = Field(default=100_000, ge=256)
    # Old LanceDB versions (and the files only they use) are kept this long, for reads of
    # other processes that started on them; a purge after a forget keeps none.
    cleanup_older_than_s: float = Field(default=10.0, ge=0)
    embedding_cache_size: int = Field(default=16_384, ge=0)
    # How stale a LanceDB read may be w.r.t. other processes' writes; 0 = always latest.
    read_consistency_s: float | None = Field(default=0.0, ge=0)
    # PostgreSQL schema (namespace) for the timeline tables; None = the default schema.
    sql_schema: str | None = None
