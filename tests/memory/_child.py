"""A separate process writing to an embedded store (crash and concurrency tests).

usage: python _child.py MODE STORE_DIR TENANT SESSION COUNT
MODE: ``loop`` appends COUNT segments, printing ``ack <id>`` after each acknowledged one;
``die-after-chunks`` writes one segment's chunk rows and exits hard before the SQL commit.
"""

from __future__ import annotations

import asyncio
import os
import sys

import structlog

from refrag_agent.memory import HashEncoder, MemoryStore, StoreSettings
from refrag_agent.model.chunker import chunk_text
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.timeline import Scope, Segment, SegmentKind


def segment_text(segment_id: str) -> str:
    """Deterministic content per id, so the parent can check segments are whole."""
    words = " ".join(f"{segment_id}-w{i}" for i in range(int(segment_id.rsplit("-", 1)[1]) % 7 + 3))
    return f"text of {segment_id}: {words}"


async def main() -> None:
    mode, folder, tenant, session, count = sys.argv[1:6]
    # Logs to stderr: stdout carries the protocol lines the parent reads.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    tokenizer = TiktokenTokenizer.byte_level()
    scope = Scope(tenant=tenant, session=session)
    settings = StoreSettings(maintenance_interval_s=None)
    prefix = f"p{os.getpid()}"
    async with MemoryStore.open(folder, encoder=HashEncoder(32), settings=settings) as store:
        await store.create_scope(scope)
        print("ready", flush=True)
        if mode == "die-after-chunks":

            async def die(*_args: object, **_kwargs: object) -> int:
                os._exit(9)

            store._segments.commit = die  # type: ignore[method-assign]
        for i in range(int(count)):
            segment_id = f"{prefix}-{i}"
            text = segment_text(segment_id)
            segment = Segment(id=segment_id, scope=scope, kind=SegmentKind.USER, text=text)
            await store.append(segment, chunk_text(text, tokenizer, k=8))
            print(f"ack {segment_id}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
