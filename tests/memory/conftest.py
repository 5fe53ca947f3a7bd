"""Fixtures for the memory store: a real LanceDB folder and a real SQL database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from refrag_agent.memory import HashEncoder, MemoryStore, StoreSettings, keys
from refrag_agent.memory.chunks import SegmentRowInfo, build_rows
from refrag_agent.model.chunker import chunk_text
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.timeline import Chunk, Scope, Segment, SegmentKind

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
_pg_state: dict[str, str | None] = {}

# Ids that would break a store pasting them into SQL or LanceDB filter expressions.
HOSTILE_IDS = [
    "plain",
    "O'Brien",
    "' OR '1'='1",
    "x' OR tenant_key != '",
    'a"; DROP TABLE refrag_segments; --',
    "-- comment",
    "/* c */ 1=1",
    "%_%",
    "\\' OR 1=1 \\",
    "ünïcødé 租户 🧠",
    "line\nbreak\ttab",
    "x" * 1000,
]

TOKENIZER = TiktokenTokenizer.byte_level()


def make_segment(
    scope: Scope,
    text: str,
    *,
    kind: SegmentKind = SegmentKind.USER,
    k: int = 16,
    **fields: Any,
) -> tuple[Segment, list[Chunk]]:
    segment = Segment(scope=scope, kind=kind, text=text, **fields)
    return segment, chunk_text(text, TOKENIZER, k=k)


async def pg_unavailable_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when the server answers."""
    if "reason" not in _pg_state:
        import asyncpg

        try:
            conn = await asyncpg.connect(_PG_DSN, timeout=3)
            await conn.close()
            _pg_state["reason"] = None
        except Exception as e:  # any failure to connect means "no server here"
            _pg_state["reason"] = f"no PostgreSQL server answers at {_PG_DSN}: {e!r}"
    return _pg_state["reason"]


async def drop_pg_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_PG_DSN, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


QUIET = StoreSettings(maintenance_interval_s=None)


@pytest.fixture
def encoder() -> HashEncoder:
    return HashEncoder(32)


@pytest.fixture
def scope() -> Scope:
    return Scope(tenant=f"tenant-{uuid.uuid4().hex[:8]}", session="s1")


OpenStore = Callable[..., Any]


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """A function that opens (and later closes) stores on one backend's database."""
    opened: list[MemoryStore] = []
    schema: str | None = None
    if request.param == "postgres":
        reason = await pg_unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        schema = f"refrag_test_{uuid.uuid4().hex[:12]}"

    async def open_store(encoder: HashEncoder | None = None, **settings: Any) -> MemoryStore:
        options = {"maintenance_interval_s": None, **settings}
        enc = encoder or HashEncoder(32)
        if schema is None:
            store = await MemoryStore.open(
                tmp_path / "store", encoder=enc, settings=StoreSettings(**options)
            )
        else:
            store = await MemoryStore.connect(
                PG_URL,
                str(tmp_path / "lance"),
                encoder=enc,
                settings=StoreSettings(sql_schema=schema, **options),
            )
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.aclose()
    if schema is not None:
        await drop_pg_schema(schema)


@pytest.fixture
async def store(tmp_path: Path, encoder: HashEncoder) -> AsyncIterator[MemoryStore]:
    async with MemoryStore.open(tmp_path / "store", encoder=encoder, settings=QUIET) as s:
        yield s


async def add_raw_chunk_rows(
    store: MemoryStore, filed_under: Scope, segment: Segment, chunks: list[Chunk], *, owner: Scope
) -> None:
    """Chunk rows written straight to the table, bypassing the store's writes: filed under
    ``filed_under`` but keyed to ``owner``'s ``segment`` (a dead writer, a bug, tampering)."""
    info = SegmentRowInfo(
        tenant=filed_under.tenant,
        session=filed_under.session,
        segment_id=segment.id,
        tenant_key=keys.tenant_key(filed_under.tenant),
        session_key=keys.session_key(filed_under),
        segment_key=keys.segment_key(owner, segment.id),
        kind="user",
        domain="user",
        domain_key=keys.domain_key("user"),
        created_at=segment.created_at,
        encoder=store.encoder.fingerprint,
        encoder_key=keys.encoder_key(store.encoder.fingerprint),
    )
    vectors = store.encoder.encode([c.text for c in chunks]).numpy().astype(np.float32)
    await store._state.chunks.add(
        build_rows(info, chunks, [c.content_hash for c in chunks], vectors)
    )
