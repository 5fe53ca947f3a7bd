"""Erasing what a forget leaves in the files: the purge that ``MemoryStore.maintain`` runs.

A forget deletes rows, and no read returns them from then on, but their bytes stay on
disk: LanceDB marks deleted rows in a deletion file and keeps the data file that holds
them, and every older version of the table too; SQLite keeps deleted rows in free pages
and in its write-ahead log. So each forget leaves a *purge row* in SQL (in the transaction
that deletes its SQL rows, so a crash cannot lose it), and one more for each round of
chunk-row deletes, naming the LanceDB fragments those rows were in. ``maintain`` then, while
purge rows exist:

1. writes the live rows of those fragments again, so the fragments leave the table;
2. rebuilds the full-text index from the live rows;
3. drops every old LanceDB version at once (cleanup without grace);
4. runs VACUUM (SQLite: and empties the write-ahead log);

and deletes the purge rows it handled. Purge rows live in ``refrag_meta`` under keys
``purge:<nonce>``, with the fragment ids as a JSON list.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import SQLAlchemyError

from refrag_agent.errors import StoreError
from refrag_agent.logs import get_logger

from . import sql
from .state import StoreState

log = get_logger(__name__)

PREFIX = "purge:"


class Purger:
    """Purge rows: recorded by forgets, read and settled by ``maintain``."""

    def __init__(self, state: StoreState) -> None:
        self.state = state

    @staticmethod
    def row(fragments: Iterable[int] = ()) -> Any:
        """The insert of one purge row (run it in a transaction)."""
        return insert(sql.store_meta).values(
            key=f"{PREFIX}{uuid.uuid4().hex}", value=json.dumps(sorted(fragments))
        )

    async def record(self, fragments: set[int]) -> None:
        """Owe a purge of these LanceDB fragments (before their rows are deleted)."""
        async with self.state.writing() as conn:
            await conn.execute(self.row(fragments))

    async def owed(self) -> dict[str, set[int]]:
        """The purge rows now stored: key -> fragments."""
        async with self.state.reading() as conn:
            rows = await conn.execute(
                select(sql.store_meta.c.key, sql.store_meta.c.value).where(
                    sql.store_meta.c.key.startswith(PREFIX, autoescape=True)
                )
            )
            return {key: set(json.loads(value)) for key, value in rows}

    async def settle(self, keys: Iterable[str]) -> None:
        """Delete the purge rows that a finished purge handled."""
        async with self.state.writing() as conn:
            await conn.execute(delete(sql.store_meta).where(sql.store_meta.c.key.in_(list(keys))))

    async def vacuum(self) -> bool:
        """Rewrite the SQL database without the space of deleted rows; False when SQLite's
        write-ahead log could not be emptied (another process was reading), so the purge
        rows stay and the next round tries again."""
        try:
            async with self.state.write_lock:
                complete = await sql.vacuum(self.state.engines)
        except SQLAlchemyError as e:
            raise StoreError("SQL VACUUM failed") from e
        if not complete:
            log.warning("memory.wal_not_emptied")
        return complete
