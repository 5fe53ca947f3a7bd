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
