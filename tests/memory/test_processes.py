"""Crash safety (SIGKILL at random moments) and concurrent writers, in several processes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lancedb

from refrag_agent.memory import HashEncoder, MemoryStore
from refrag_agent.memory.store import LANCE_DIR
from refrag_agent.model.chunker import chunk_text
from refrag_agent.timeline import Scope, Segment, SegmentKind

from ._child import segment_text
from .conftest import QUIET, TOKENIZER

CHILD = Path(__file__).with_name("_child.py")


def _spawn(mode: str, folder: Path, scope: Scope, count: int) -> subprocess.Popen[str]:
    folder.mkdir(parents=True, exist_ok=True)
    args = [str(CHILD), mode, str(folder), scope.tenant, scope.session, str(count)]
    # The child holds its own copy of the log's descriptor: ours closes once it has started.
    with open(folder / f"child-{time.monotonic_ns()}.log", "w") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_ready(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        child.wait()
        raise AssertionError(f"child did not start: {line!r}, rc={child.returncode}")


def _raw_chunk_count(folder: Path) -> int:
    return int(lancedb.connect(str(folder / LANCE_DIR)).open_table("chunks").count_rows())


async def _check_whole(store: MemoryStore, scope: Scope, acked: set[str]) -> None:
    timeline = await store.timeline(scope)
    ids = [s.id for s in timeline]
    assert len(ids) == len(set(ids)), "duplicated segment"
    assert [s.seq for s in timeline] == list(range(len(timeline))), "seq not dense"
    assert acked <= set(ids), f"lost acknowledged segments: {sorted(acked - set(ids))[:5]}"
    batch = await store.fetch(scope, ids)
    by_segment: dict[str, list[list[int]]] = {}
    for segment_id, tokens in zip(batch.segment_ids, batch.token_ids, strict=True):
        by_segment.setdefault(segment_id, []).append(tokens)
    for segment in timeline:
        expected = chunk_text(segment_text(segment.id), TOKENIZER, k=8)
        assert segment.text == segment_text(segment.id)
        assert by_segment[segment.id] == [list(c.token_ids) for c in expected], "partial"
    stats = await store.stats()
    assert stats.pending_writes == 0
    assert stats.chunks == sum(s.n_chunks for s in timeline), "orphan chunk rows left"


async def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    scope = Scope(tenant="crash", session="loop")
    rng = random.Random(1234)
    acked: set[str] = set()
    for _round in range(4):
        child = _spawn("loop", tmp_path, scope, 10_000)
        _wait_ready(child)
        assert child.stdout is not None
        first = child.stdout.readline()  # warmed up: the kill lands mid-stream
        assert first.startswith("ack ")
        time.sleep(rng.uniform(0.05, 1.0))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        lines = [first, *out.splitlines()]
        acked |= {line.split(" ", 1)[1].strip() for line in lines if line.startswith("ack ")}
        async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET) as store:
            await _check_whole(store, scope, acked)
    assert len(acked) > 4


async def test_orphans_of_a_dead_writer_are_swept_on_open(tmp_path: Path) -> None:
    scope = Scope(tenant="crash", session="orphan")
    child = _spawn("die-after-chunks", tmp_path, scope, 1)
    _wait_ready(child)
    child.communicate()
    assert child.returncode == 9
    assert _raw_chunk_count(tmp_path) > 0  # chunk rows written, segment never committed
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET) as store:
        stats = await store.stats()
        assert (stats.segments, stats.chunks, stats.pending_writes) == (0, 0, 0)
        assert await store.timeline(scope) == []
    assert _raw_chunk_count(tmp_path) == 0


async def test_fifty_writers_and_a_second_process(tmp_path: Path) -> None:
    scope = Scope(tenant="busy", session="shared")
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET) as store:
        await store.create_scope(scope)
        child = _spawn("loop", tmp_path, scope, 60)
        _wait_ready(child)

        async def writer(w: int) -> list[str]:
            ids = []
            for i in range(3):
                segment_id = f"w{w}-{i}"
                text = segment_text(segment_id)
                segment = Segment(id=segment_id, scope=scope, kind=SegmentKind.USER, text=text)
                await store.append(segment, chunk_text(text, TOKENIZER, k=8))
                ids.append(segment_id)
            return ids

        results = await asyncio.gather(*(writer(w) for w in range(50)))
        out, _ = await asyncio.to_thread(child.communicate)
        assert child.returncode == 0
        logs = "".join(p.read_text() for p in tmp_path.glob("child-*.log"))
        assert "database is locked" not in logs
        mine = {i for ids in results for i in ids}
        theirs = {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("ack ")}
        assert len(mine) == 150 and len(theirs) == 60
        await _check_whole(store, scope, mine | theirs)
        assert len(await store.timeline(scope)) == 210
