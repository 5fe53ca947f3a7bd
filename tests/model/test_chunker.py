from __future__ import annotations

import pytest

from refrag_agent import InvalidInput
from refrag_agent.model.chunker import chunk_text
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.timeline import content_hash

from .conftest import LONG_TEXT


@pytest.mark.parametrize("k", [1, 8, 16, 32])
def test_chunks_cover_the_tokens(byte_tokenizer: TiktokenTokenizer, k: int) -> None:
    ids = byte_tokenizer.encode(LONG_TEXT)
    chunks = chunk_text(LONG_TEXT, byte_tokenizer, k=k)
    assert [t for c in chunks for t in c.token_ids] == ids
    assert all(c.n_tokens == k for c in chunks[:-1]) and 1 <= chunks[-1].n_tokens <= k
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.content_hash == content_hash(c.text) for c in chunks)


def test_segments_are_chunked_apart(byte_tokenizer: TiktokenTokenizer) -> None:
    first = chunk_text("a" * 20, byte_tokenizer, k=16)
    second = chunk_text("b" * 20, byte_tokenizer, k=16)
    # A chunk never spans two segments: both end with their own short chunk.
    assert [c.n_tokens for c in first] == [16, 4] and [c.n_tokens for c in second] == [16, 4]


def test_bad_input(byte_tokenizer: TiktokenTokenizer) -> None:
    with pytest.raises(InvalidInput):
        chunk_text("", byte_tokenizer)
    with pytest.raises(InvalidInput):
        chunk_text("text", byte_tokenizer, k=0)
