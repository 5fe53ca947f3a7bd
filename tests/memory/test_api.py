from __future__ import annotations

from pathlib import Path

import pytest

import refrag_agent.memory as memory
from refrag_agent.errors import InvalidInput
from refrag_agent.memory import EmbeddingFunction, HashEncoder, MemoryStore, open_store
from refrag_agent.timeline import Scope

from .conftest import QUIET, make_segment


def test_all_is_sorted_and_importable() -> None:
    assert memory.__all__ == sorted(memory.__all__)
    for name in memory.__all__:
        assert hasattr(memory, name)


def test_hash_encoder_is_an_embedding_function() -> None:
    encoder = HashEncoder(16)
    assert isinstance(encoder, EmbeddingFunction)
    out = encoder.encode(["a b c", "a b c", "zzz"])
    assert out.shape == (3, 16) and str(out.dtype) == "torch.float32"
    assert (out[0] == out[1]).all() and not (out[0] == out[2]).all()
    assert HashEncoder(16, version=2).fingerprint != encoder.fingerprint


async def test_open_await_and_context_manager(tmp_path: Path, scope: Scope) -> None:
    store = await open_store(tmp_path / "a", encoder=HashEncoder(32), settings=QUIET)
    await store.aclose()
    await store.aclose()  # closing twice is harmless
    assert store.closed
    with pytest.raises(InvalidInput, match="closed"):
        await store.create_scope(scope)
    async with MemoryStore.open(tmp_path / "b", encoder=HashEncoder(32), settings=QUIET) as s:
        assert await s.create_scope(scope)
        assert not await s.create_scope(scope)
    assert s.closed


async def test_encoder_width_must_match_the_store(tmp_path: Path, scope: Scope) -> None:
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET) as store:
        await store.create_scope(scope)
        await store.append(*make_segment(scope, "some text"))
    with pytest.raises(InvalidInput, match="width"):
        await MemoryStore.open(tmp_path, encoder=HashEncoder(48), settings=QUIET)


def test_import_does_not_load_torch() -> None:
    import subprocess
    import sys

    code = "import sys, refrag_agent.memory; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_read_only_open_reads_without_an_encoder(tmp_path: Path, scope: Scope) -> None:
    segment, chunks = make_segment(scope, "the invoice is due on Friday")
    async with MemoryStore.open(tmp_path, encoder=HashEncoder(32), settings=QUIET) as store:
        await store.create_scope(scope)
        await store.append(segment, chunks)
        await store.maintain()  # builds the full-text index the read-only store searches
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    async with MemoryStore.open_read_only(tmp_path) as store:
        assert [s.text for s in await store.timeline(scope)] == [segment.text]
        assert await store.list_sessions(scope.tenant) == [scope.session]
        hits = await store.search(scope, "invoice", mode="text")
        assert {h.segment_id for h in hits} == {segment.id}
        with pytest.raises(InvalidInput, match="read-only"):
            await store.create_scope(Scope(tenant=scope.tenant, session="new"))
        with pytest.raises(InvalidInput, match="read-only"):
            await store.append(*make_segment(scope, "more text"), embeddings=[[0.0] * 32])
        with pytest.raises(InvalidInput, match="read-only"):
            await store.maintain()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == files


@pytest.mark.parametrize("made", [False, True])
async def test_read_only_open_of_a_folder_without_memory(tmp_path: Path, made: bool) -> None:
    folder = tmp_path / "nothing-here"
    if made:
        folder.mkdir()
    with pytest.raises(InvalidInput, match="no memory in"):
        await MemoryStore.open_read_only(folder)
    assert folder.is_dir() == made
    assert not made or not any(folder.iterdir())
