"""After an encoder change, stale embeddings are re-encoded, never mixed in."""

from __future__ import annotations

import numpy as np

from refrag_agent.memory import HashEncoder
from refrag_agent.timeline import Scope

from .conftest import OpenStore, make_segment


async def test_new_encoder_reencodes_lazily_and_on_command(
    backend: OpenStore, scope: Scope
) -> None:
    old = HashEncoder(32, version=1)
    store = await backend(encoder=old)
    await store.create_scope(scope)
    first, first_chunks = make_segment(scope, "the first segment, written by the old encoder")
    second, second_chunks = make_segment(scope, "the second segment, also from the old encoder")
    await store.append(first, first_chunks)
    await store.append(second, second_chunks)
    await store.aclose()

    new = HashEncoder(32, version=2)
    store = await backend(encoder=new)
    stats = await store.stats()
    total = len(first_chunks) + len(second_chunks)
    assert stats.stale_chunks == total and stats.encoder_fingerprint == new.fingerprint

    # Lazily: a fetch returns new-encoder vectors and writes them back.
    batch = await store.fetch(scope, [first.id])
    assert batch.n_reencoded == len(first_chunks)
    expected = new.encode([c.text for c in first_chunks]).numpy()
    np.testing.assert_allclose(batch.embeddings, expected, atol=1e-6)
    assert (await store.stats()).stale_chunks == len(second_chunks)
    again = await store.fetch(scope, [first.id])
    assert again.n_reencoded == 0
    np.testing.assert_allclose(again.embeddings, expected, atol=1e-6)

    # The vector leg of search only compares vectors of the current encoder.
    hits = await store.search(scope, "second segment old encoder", mode="vector", limit=20)
    assert second.id not in {h.segment_id for h in hits}

    # Explicitly: reencode() fixes every remaining row.
    assert await store.reencode() == len(second_chunks)
    assert (await store.stats()).stale_chunks == 0
    assert await store.reencode() == 0
    hits = await store.search(scope, "second segment old encoder", mode="vector", limit=20)
    assert second.id in {h.segment_id for h in hits}

    # Cached embeddings are per fingerprint: the new encoder's vectors get reused.
    calls = new.texts_encoded
    result = await store.append(
        *make_segment(scope, "the first segment, written by the old encoder")
    )
    assert result.n_reused == result.n_chunks and new.texts_encoded == calls


async def test_reencode_one_scope(backend: OpenStore, scope: Scope) -> None:
    store = await backend(encoder=HashEncoder(32, version=1))
    other = Scope(tenant=scope.tenant, session="other")
    for s in (scope, other):
        await store.create_scope(s)
        await store.append(*make_segment(s, f"text of {s.session}"))
    await store.aclose()
    store = await backend(encoder=HashEncoder(32, version=3))
    n = (await store.stats(scope)).stale_chunks
    assert n > 0
    assert await store.reencode(scope=scope) == n
    assert (await store.stats(scope)).stale_chunks == 0
    assert (await store.stats(other)).stale_chunks > 0
