"""A separate process that opens a store at an agreed moment (concurrent-open tests).

usage: python _opener.py FOLDER [SCHEMA]
Prints ``ready`` once imported, reads the moment to open at (wall-clock seconds) from
stdin, waits for it, opens the store in FOLDER (with SCHEMA: the LanceDB folder, the
timeline in that PostgreSQL schema), registers a session of its own, appends one segment
and prints ``ok``; an error is printed as ``error <repr>``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import numpy as np

from refrag_agent.memory import HashEncoder, MemoryStore, StoreSettings
from refrag_agent.timeline import Chunk, Scope, Segment, SegmentKind, content_hash

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def main() -> None:
    folder = sys.argv[1]
    schema = sys.argv[2] if len(sys.argv) > 2 else None
    settings = StoreSettings(maintenance_interval_s=None, sql_schema=schema)
    scope = Scope(tenant="shared", session=f"p{os.getpid()}")
    text = f"written by {scope.session}"
    chunk = Chunk(index=0, token_ids=(1, 2, 3), text=text, content_hash=content_hash(text))
    segment = Segment(scope=scope, kind=SegmentKind.USER, text=text)
    # Embeddings given: no encoder (and no torch) is loaded.
    vectors = np.ones((1, 32), dtype=np.float32)
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    time.sleep(max(0.0, start - time.time()))
    try:
        if schema is None:
            opening = MemoryStore.open(folder, encoder=HashEncoder(32), settings=settings)
        else:
            opening = MemoryStore.connect(
                PG_URL, folder, encoder=HashEncoder(32), settings=settings
            )
        async with opening as store:
            await store.create_scope(scope)
            await store.append(segment, [chunk], embeddings=vectors)
    except Exception as e:
        print(f"error {e!r} from {e.__cause__!r}", flush=True)
        return
    print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
