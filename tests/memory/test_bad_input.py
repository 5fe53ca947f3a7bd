"""Bad input gets InvalidInput and nothing is written."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from refrag_agent.errors import InvalidInput, ScopeError
from refrag_agent.memory import MemoryStore
from refrag_agent.timeline import Chunk, Scope, Segment, content_hash

from .conftest import OpenStore, make_segment

Case = Callable[[Scope], tuple[Segment, list[Chunk], dict[str, Any]]]


def _plain(scope: Scope, text: str = "a perfectly fine text, two chunks long") -> tuple:
    segment, chunks = make_segment(scope, text)
    return segment, chunks, {}


def _replace_text(scope: Scope, text: str) -> tuple:
    segment, chunks = make_segment(scope, "valid text here")
    return segment.model_copy(update={"text": text}), chunks, {}


def _bad_chunk(scope: Scope, **change: Any) -> tuple:
    segment, chunks = make_segment(scope, "valid text here, long enough for 2")
    chunks[1] = dataclasses.replace(chunks[1], **change)
    return segment, chunks, {}


def _embeddings(scope: Scope, value: Callable[[int], Any]) -> tuple:
    segment, chunks = make_segment(scope, "valid text here, long enough for 2")
    return segment, chunks, {"embeddings": value(len(chunks))}


def _nan(n: int) -> np.ndarray:
    array = np.ones((n, 32), dtype=np.float32)
    array[-1, 3] = np.nan
    return array


CASES: dict[str, Case] = {
    "empty text": lambda s: _replace_text(s, ""),
    "lone surrogate": lambda s: _replace_text(s, "bad \ud800 surrogate"),
    "NUL byte": lambda s: _replace_text(s, "nul \x00 inside"),
    "over the size limit": lambda s: _plain(s, "x" * 5000),
    "NUL in a chunk": lambda s: _bad_chunk(s, text="a\x00b", content_hash=content_hash("a\x00b")),
    "surrogate in a chunk": lambda s: _bad_chunk(
        s, text="\udfff", content_hash=content_hash("\udfff")
    ),
    "wrong content hash": lambda s: _bad_chunk(s, content_hash="0" * 32),
    "chunk index gap": lambda s: _bad_chunk(s, index=5),
    "empty chunk": lambda s: _bad_chunk(s, token_ids=()),
    "negative token id": lambda s: _bad_chunk(s, token_ids=(1, -2)),
    "no chunks": lambda s: (make_segment(s, "text")[0], [], {}),
    "embeddings of the wrong width": lambda s: _embeddings(s, lambda n: np.ones((n, 31))),
    "embeddings of the wrong count": lambda s: _embeddings(s, lambda n: np.ones((n + 1, 32))),
    "embeddings with NaN": lambda s: _embeddings(s, _nan),
    "embeddings with inf": lambda s: _embeddings(s, lambda n: np.full((n, 32), np.inf)),
    "non-numeric embeddings": lambda s: _embeddings(s, lambda n: [["a"] * 32] * n),
    "metadata not JSON": lambda s: (
        make_segment(s, "text", metadata={"f": object()})[0],
        make_segment(s, "text")[1],
        {},
    ),
}


async def _nothing_written(store: MemoryStore) -> None:
    stats = await store.stats()
    assert (stats.segments, stats.chunks, stats.pending_writes) == (0, 0, 0)


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_input_is_rejected_and_nothing_written(
    backend: OpenStore, scope: Scope, case: str
) -> None:
    store = await backend(max_segment_chars=4096)
    await store.create_scope(scope)
    segment, chunks, options = CASES[case](scope)
    with pytest.raises(InvalidInput):
        await store.append(segment, chunks, **options)
    await _nothing_written(store)


async def test_unknown_scope_reads_empty_and_refuses_writes(
    backend: OpenStore, scope: Scope
) -> None:
    store = await backend()
    segment, chunks = make_segment(scope, "nobody registered this scope")
    with pytest.raises(ScopeError):
        await store.append(segment, chunks)
    for call in (
        store.forget_session(scope),
        store.forget_tenant(scope.tenant),
        store.reencode(scope=scope),
    ):
        with pytest.raises(ScopeError):
            await call
    assert await store.timeline(scope) == []
    assert await store.get_segment(scope, segment.id) is None
    assert await store.search(scope, "registered") == []
    assert await store.search(scope, "registered", all_sessions=True) == []
    assert await store.list_sessions(scope.tenant) == []
    assert not await store.has_scope(scope)
    assert len(await store.fetch(scope, [segment.id], strict=False)) == 0
    with pytest.raises(InvalidInput, match="not found"):
        await store.fetch(scope, [segment.id])
    await _nothing_written(store)


async def test_bad_read_arguments(backend: OpenStore, scope: Scope) -> None:
    store = await backend()
    await store.create_scope(scope)
    with pytest.raises(InvalidInput):
        await store.search(scope, "")
    with pytest.raises(InvalidInput):
        await store.search(scope, "q", limit=0)
    with pytest.raises(InvalidInput):
        await store.fetch(scope, "a-single-string-id")
    with pytest.raises(InvalidInput):
        await store.get_segment(scope, "bad\x00id")
    with pytest.raises(ScopeError):
        await store.forget_tenant("")
