"""Concurrent callers share work: encoder calls (EncodingQueue), lookups of stored
embeddings and scans of chunk rows; each gets its own rows."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from refrag_agent.errors import InvalidInput, StoreError
from refrag_agent.memory import HashEncoder, MemoryStore
from refrag_agent.memory.encoding import EncodingQueue
from refrag_agent.timeline import Scope
from tests.memory.conftest import QUIET, make_segment


class GatedEncoder(HashEncoder):
    """A HashEncoder whose first call waits for ``gate``; it records each call's texts and
    fails a call holding the text ``bad``."""

    def __init__(self) -> None:
        super().__init__(16)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        self.batches.append(list(texts))
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        if "bad" in texts:
            raise RuntimeError("cannot encode 'bad'")
        return super().encode(texts)


async def _queued(queue: EncodingQueue, n: int) -> None:
    """Wait until ``n`` requests wait behind the call in progress."""
    for _ in range(1000):
        if len(queue._waiting) == n:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{len(queue._waiting)} requests queued, not {n}")


Task = asyncio.Task[Any]


async def _behind_a_call(
    queue: EncodingQueue, encoder: GatedEncoder, first: str, *queued: str
) -> tuple[Task, list[Task]]:
    """A call of ``first`` under way (held at the gate), and one request per ``queued``
    text waiting behind it."""
    running = asyncio.create_task(queue.encode([first]))
    await asyncio.to_thread(encoder.entered.wait, 10)
    waiting = [asyncio.create_task(queue.encode([t])) for t in queued]
    await _queued(queue, len(queued))
    return running, waiting


async def test_waiting_callers_share_one_call_and_get_their_own_rows() -> None:
    encoder = GatedEncoder()
    queue = EncodingQueue(encoder)
    first = asyncio.create_task(queue.encode(["zero"]))
    await asyncio.to_thread(encoder.entered.wait, 10)  # the first call is running
    texts = [[f"text {i}", f"more {i}"] if i % 2 else [f"text {i}"] for i in range(6)]
    tasks = [asyncio.create_task(queue.encode(t)) for t in texts]
    await _queued(queue, len(texts))
    encoder.gate.set()
    results = await asyncio.gather(first, *tasks)
    assert encoder.batches == [["zero"], [t for group in texts for t in group]]
    assert queue.calls == 2
    reference = HashEncoder(16)
    for group, rows in zip([["zero"], *texts], results, strict=True):
        assert rows.dtype == np.float32 and rows.shape == (len(group), 16)
        np.testing.assert_array_equal(rows, reference.encode(group).numpy())


async def test_a_call_takes_at_most_max_texts_unless_one_request_is_larger() -> None:
    encoder = GatedEncoder()
    queue = EncodingQueue(encoder, max_texts=3)
    first = asyncio.create_task(queue.encode(["zero"]))
    await asyncio.to_thread(encoder.entered.wait, 10)
    tasks = [
        asyncio.create_task(queue.encode(t))
        for t in (["a", "b"], ["c"], ["d"], ["e", "f", "g", "h"], ["i"])
    ]
    await _queued(queue, 5)
    encoder.gate.set()
    await asyncio.gather(first, *tasks)
    assert encoder.batches == [["zero"], ["a", "b", "c"], ["d"], ["e", "f", "g", "h"], ["i"]]


async def test_a_cancelled_caller_is_left_out_and_the_others_answered() -> None:
    encoder = GatedEncoder()
    queue = EncodingQueue(encoder)
    running, (gone, kept) = await _behind_a_call(queue, encoder, "running", "gone", "kept")
    gone.cancel()
    running.cancel()  # its call is under way: its rows are dropped
    encoder.gate.set()
    rows = await kept
    np.testing.assert_array_equal(rows, HashEncoder(16).encode(["kept"]).numpy())
    assert encoder.batches == [["running"], ["kept"]]
    for task in (gone, running):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (await queue.encode(["after"])).shape == (1, 16)  # the queue still serves


async def test_a_failing_text_fails_only_its_caller() -> None:
    encoder = GatedEncoder()
    queue = EncodingQueue(encoder)
    first, (good, bad) = await _behind_a_call(queue, encoder, "first", "good", "bad")
    encoder.gate.set()
    await first
    assert (await good).shape == (1, 16)
    with pytest.raises(StoreError, match="encoder failed"):
        await bad
    # the shared call failed, then each request was encoded alone
    assert encoder.batches[1:] == [["good", "bad"], ["good"], ["bad"]]


async def test_wrong_rows_from_the_encoder_are_refused() -> None:
    class Short(HashEncoder):
        def encode(self, texts: Sequence[str]) -> torch.Tensor:
            return super().encode(texts)[:-1]

    with pytest.raises(InvalidInput, match="wrong shape"):
        await EncodingQueue(Short(8)).encode(["a", "b"])


def test_callers_on_other_threads_loops() -> None:
    queue = EncodingQueue(HashEncoder(8))
    results: dict[int, np.ndarray] = {}

    def caller(i: int) -> None:
        results[i] = asyncio.run(queue.encode([f"thread {i}"]))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    reference = HashEncoder(8)
    for i in range(4):
        np.testing.assert_array_equal(results[i], reference.encode([f"thread {i}"]).numpy())


async def test_store_embed_uses_the_queue(tmp_path: Path) -> None:
    encoder = HashEncoder(32)
    async with MemoryStore.open(tmp_path, encoder=encoder, settings=QUIET) as store:
        rows = await store.embed(["one", "two"])
        assert rows.shape == (2, 32) and encoder.calls == 1
        np.testing.assert_array_equal(rows, HashEncoder(32).encode(["one", "two"]).numpy())
        assert (await store.embed([])).shape == (0, 32) and encoder.calls == 1
        with pytest.raises(InvalidInput, match="not one string"):
            await store.embed("one")


async def test_concurrent_appends_share_lookups_and_encodings(tmp_path: Path) -> None:
    encoder = HashEncoder(32)
    scope = Scope(tenant="t", session="s")
    async with MemoryStore.open(tmp_path, encoder=encoder, settings=QUIET) as store:
        await store.create_scope(scope)
        old = [f"stored before, text number {i}, long enough for two chunks" for i in range(3)]
        for text in old:
            await store.append(*make_segment(scope, text))
        store._state.cache.clear()  # as in a new process: stored rows are found by a scan
        scans: list[str] = []
        table, vectors = store._state.chunks, store._vectors
        scan = table.scan

        stored, asked = vectors._stored, []

        async def asking(tenant_key: str, hashes: list[str]) -> Any:
            asked.append(hashes)
            return await stored(tenant_key, hashes)

        async def gated(where: str, columns: list[str], **options: Any) -> Any:
            if "content_hash" in where:
                scans.append(where)
                while len(scans) == 1 and len(asked) < 6:
                    await asyncio.sleep(0.001)  # the first scan waits for the others
            return await scan(where, columns, **options)

        vectors._stored = asking  # type: ignore[method-assign]
        table.scan = gated  # type: ignore[method-assign]
        new = [f"a new text {i}, never stored, two chunks or more" for i in range(3)]
        made = [make_segment(scope, text) for text in [*old, *new]]
        results = await asyncio.wait_for(asyncio.gather(*(store.append(s, c) for s, c in made)), 10)
        assert len(scans) <= 2  # the first append's, then those waiting meanwhile
        for (segment, chunks), result in zip(made, results, strict=True):
            is_new = segment.text in new
            assert result.n_reused == (0 if is_new else len(chunks))
            assert result.n_encoded == (len(chunks) if is_new else 0)
            batch = await store.fetch(scope, [segment.id])
            np.testing.assert_array_equal(batch.embeddings, encoder.encode(batch.texts).numpy())


async def test_concurrent_fetches_share_one_scan(tmp_path: Path) -> None:
    encoder = HashEncoder(32)
    async with MemoryStore.open(tmp_path, encoder=encoder, settings=QUIET) as store:
        scopes = [Scope(tenant=f"t{i % 2}", session=f"s{i}") for i in range(5)]
        ids: dict[Scope, list[str]] = {}
        for i, scope in enumerate(scopes):
            await store.create_scope(scope)
            ids[scope] = []
            for j in range(3):
                segment, chunks = make_segment(scope, f"session {i}, segment {j}: " * (j + 1))
                await store.append(segment, chunks)
                ids[scope].append(segment.id)
        alone = {scope: await store.fetch(scope, ids[scope][::-1]) for scope in scopes}
        scans: list[str] = []
        table = store._state.chunks
        scan = table.scan

        rows_of, asked = table.rows_of, []

        async def asking(session_key: str, seg_keys: Any, columns: Any) -> Any:
            asked.append(session_key)
            return await rows_of(session_key, seg_keys, columns)

        async def gated(where: str, columns: list[str], **options: Any) -> Any:
            scans.append(where)
            while len(scans) == 1 and len(asked) < len(scopes):
                await asyncio.sleep(0.001)  # the first scan waits for the others
            return await scan(where, columns, **options)

        table.rows_of = asking  # type: ignore[method-assign]
        table.scan = gated  # type: ignore[method-assign]
        together = await asyncio.wait_for(
            asyncio.gather(*(store.fetch(scope, ids[scope][::-1]) for scope in scopes)), 10
        )
        assert len(scans) <= 2  # the first fetch's, then those waiting meanwhile
        for scope, batch in zip(scopes, together, strict=True):
            assert batch.segment_ids == alone[scope].segment_ids
            assert batch.texts == alone[scope].texts
            assert batch.token_ids == alone[scope].token_ids
            np.testing.assert_array_equal(batch.embeddings, alone[scope].embeddings)
