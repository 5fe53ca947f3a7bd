"""Several processes opening one fresh store at the same moment all succeed."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from refrag_agent.memory import HashEncoder, MemoryStore, StoreSettings
from refrag_agent.timeline import Scope

from .conftest import PG_URL, QUIET, drop_pg_schema, pg_unavailable_reason

OPENER = Path(__file__).with_name("_opener.py")
PROCESSES = 4


def _open_at_once(folder: Path, schema: str | None = None) -> list[str]:
    """Start the openers and, once all are ready, have them open at one moment."""
    args = [str(folder), *([schema] if schema else [])]
    children = [
        subprocess.Popen(
            [sys.executable, str(OPENER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    start = f"{time.time() + 0.5}\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write(start)
        child.stdin.flush()
    return [child.communicate(timeout=120)[0].strip() for child in children]


async def _sessions(store: MemoryStore) -> list[str]:
    sessions = await store.list_sessions("shared")
    for session in sessions:
        assert len(await store.timeline(Scope(tenant="shared", session=session))) == 1
    return sessions


async def test_processes_opening_a_fresh_folder_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    assert _open_at_once(folder) == ["ok"] * PROCESSES
    async with MemoryStore.open(folder, encoder=HashEncoder(32), settings=QUIET) as store:
        assert len(await _sessions(store)) == PROCESSES


async def test_processes_opening_a_fresh_postgres_schema_at_once(tmp_path: Path) -> None:
    reason = await pg_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    schema = f"refrag_test_{uuid.uuid4().hex[:12]}"
    try:
        assert _open_at_once(tmp_path / "lance", schema) == ["ok"] * PROCESSES
        settings = StoreSettings(maintenance_interval_s=None, sql_schema=schema)
        async with MemoryStore.connect(
            PG_URL, str(tmp_path / "lance"), encoder=HashEncoder(32), settings=settings
        ) as store:
            assert len(await _sessions(store)) == PROCESSES
    finally:
        await drop_pg_schema(schema)
