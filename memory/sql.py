"""The SQL timeline: tables, engines (SQLite by default, PostgreSQL by URL), migrations.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy timeout instead of failing
with "database is locked" when a read transaction tries to upgrade to a write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

from refrag_agent.errors import StoreError
from refrag_agent.logs import get_logger

log = get_logger(__name__)

SCHEMA_VERSION = 2


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, also on SQLite (stored naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


metadata = MetaData()

schema_version = Table(
    "refrag_schema_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

store_meta = Table(
    "refrag_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

tenants = Table(
    "refrag_tenants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(32), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

sessions = Table(
    "refrag_sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", Integer, ForeignKey("refrag_tenants.id"), nullable=False, index=True),
    Column("key", String(32), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("next_seq", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
)

segments = Table(
    "refrag_segments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", Integer, ForeignKey("refrag_sessions.id"), nullable=False),
    Column("segment_key", String(32), nullable=False, unique=True),
    Column("segment_id", Text, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("domain", Text, nullable=False),
    Column("domain_key", String(32), nullable=False),
    Column("source", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("n_tokens", Integer, nullable=False),
    Column("n_chunks", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("meta", JSON, nullable=False),
    Column("digest", String(64), nullable=False),
    UniqueConstraint("session_id", "seq", name="uq_refrag_segments_session_seq"),
)

# Added by schema version 2 (see MIGRATIONS): time-range reads of one session.
segments_created_index = Index(
    "ix_refrag_segments_session_created", segments.c.session_id, segments.c.created_at
)

# A write or forget in flight: chunk rows under ``key`` (a segment, session or tenant key,
# per ``level``) may exist in LanceDB without a committed segment row. Swept on open.
pending = Table(
    "refrag_pending",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("level", String(8), nullable=False),
    Column("owner", Text, nullable=False),
    Column("started_at", Float, nullable=False),
)


async def _migrate_1_to_2(conn: AsyncConnection) -> None:
    await conn.run_sync(lambda c: segments_created_index.create(c, checkfirst=True))


# version -> step to version + 1. A new schema version adds one entry here.
MIGRATIONS: dict[int, Callable[[AsyncConnection], Awaitable[None]]] = {1: _migrate_1_to_2}


@dataclass
class Engines:
    """A reader and a writer engine; on PostgreSQL they are the same engine."""

    reader: AsyncEngine
    writer: AsyncEngine
    url: URL
    schema: str | None

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def _sqlite_engine(
    url: URL, *, busy_timeout_s: float, immediate: bool, pool_size: int
) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=busy_timeout_s,
        connect_args={"timeout": busy_timeout_s},
    )
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


def make_engines(url: str | URL, *, schema: str | None, busy_timeout_s: float) -> Engines:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if schema is not None:
            raise StoreError("sql_schema is only supported on PostgreSQL", url=str(parsed))
        # One writer connection: in-process writers queue on a lock, other processes on
        # the busy timeout.
        writer = _sqlite_engine(parsed, busy_timeout_s=busy_timeout_s, immediate=True, pool_size=1)
        reader = _sqlite_engine(parsed, busy_timeout_s=busy_timeout_s, immediate=False, pool_size=4)
        return Engines(reader=reader, writer=writer, url=parsed, schema=None)
    options: dict[str, Any] = {}
    if schema is not None:
        options["schema_translate_map"] = {None: schema}
    engine = create_async_engine(
        parsed, pool_size=8, max_overflow=8, pool_pre_ping=True, execution_options=options
    )
    return Engines(reader=engine, writer=engine, url=parsed, schema=schema)


async def ensure_schema(engines: Engines, *, dim: int) -> int:
    """Create the tables or migrate them to :data:`SCHEMA_VERSION`; return the version."""
    async with engines.writer.begin() as conn:
        if not engines.is_sqlite:
            # Serialise concurrent openers of a fresh database, before anything is created:
            # two racing CREATE SCHEMA IF NOT EXISTS can both try to create it.
            await conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
            if engines.schema is not None:
                # The name is the operator's configuration, quoted as an identifier.
                quoted = conn.dialect.identifier_preparer.quote_identifier(engines.schema)
                await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
        has_version = await conn.run_sync(
            lambda c: inspect(c).has_table(schema_version.name, schema=engines.schema)
        )
        if not has_version:
            await conn.run_sync(lambda c: metadata.create_all(c, checkfirst=True))
            await conn.execute(schema_version.insert().values(id=1, version=SCHEMA_VERSION))
            await conn.execute(store_meta.insert().values(key="dim", value=str(dim)))
            log.info("memory.schema_created", version=SCHEMA_VERSION)
            return SCHEMA_VERSION
        version = (await conn.execute(select(schema_version.c.version))).scalar_one()
        if version > SCHEMA_VERSION:
            raise StoreError(
                "the SQL timeline was written by a newer refrag-agent",
                found=version,
                supported=SCHEMA_VERSION,
            )
        while version < SCHEMA_VERSION:
            await MIGRATIONS[version](conn)
            version += 1
            await conn.execute(schema_version.update().values(version=version))
            log.info("memory.schema_migrated", version=version)
        stored_dim = (
            await conn.execute(select(store_meta.c.value).where(store_meta.c.key == "dim"))
        ).scalar_one_or_none()
        if stored_dim is None:
            await conn.execute(store_meta.insert().values(key="dim", value=str(dim)))
        return int(version)


async def vacuum(engines: Engines) -> bool:
    """VACUUM the timeline, so the bytes of deleted rows are in no file of the database.

    SQLite rewrites the file and then empties its write-ahead log, which still holds pages
    as they were; False when the log could not be emptied because another connection is
    reading. PostgreSQL vacuums the timeline tables (the server's own files, its WAL and
    backups, are its operator's).
    """
    async with engines.writer.connect() as conn:
        if engines.is_sqlite:
            # VACUUM cannot run in a transaction, and every SQLAlchemy transaction here
            # begins with BEGIN IMMEDIATE: these statements go to the driver itself.
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await (await driver.execute("VACUUM")).close()
            cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, _log, _checkpointed = await cursor.fetchone()
            await cursor.close()
            return int(busy) == 0
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        quote = conn.dialect.identifier_preparer.quote_identifier
        prefix = "" if engines.schema is None else f"{quote(engines.schema)}."
        for table in (segments, sessions, tenants, store_meta):
            await conn.exec_driver_sql(f"VACUUM {prefix}{quote(table.name)}")
    return True


async def read_schema(engines: Engines) -> tuple[int, int] | None:
    """(schema version, embedding width) of an existing timeline, changing nothing.

    None when the database holds no timeline. A version other than :data:`SCHEMA_VERSION`
    is a ``StoreError``: only a writable open migrates.
    """
    async with engines.reader.connect() as conn:
        has_version = await conn.run_sync(
            lambda c: inspect(c).has_table(schema_version.name, schema=engines.schema)
        )
        if not has_version:
            return None
        version = (await conn.execute(select(schema_version.c.version))).scalar_one()
        dim = (
            await conn.execute(select(store_meta.c.value).where(store_meta.c.key == "dim"))
        ).scalar_one_or_none()
    if version != SCHEMA_VERSION:
        raise StoreError(
            "the SQL timeline has another schema version",
            found=version,
            supported=SCHEMA_VERSION,
            fix="open it once with MemoryStore.open(path, encoder=...), which migrates it",
        )
    return None if dim is None else (int(version), int(dim))
