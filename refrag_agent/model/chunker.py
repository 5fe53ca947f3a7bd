"""Cut the text of one segment into chunks of ``k`` decoder tokens.

A chunk never spans two segments: each segment is chunked on its own, and only its last
chunk may be shorter than ``k``.
"""

from __future__ import annotations

from collections.abc import Sequence

from refrag_agent.errors import InvalidInput
from refrag_agent.model.tokenizer import Tokenizer
from refrag_agent.timeline import Chunk, content_hash

DEFAULT_CHUNK_TOKENS = 16


def split_tokens(token_ids: Sequence[int], k: int) -> list[tuple[int, ...]]:
    """Split ids into consecutive groups of ``k``; the last may be shorter."""
    if k < 1:
        raise InvalidInput("chunk size k must be at least 1", k=k)
    return [tuple(token_ids[i : i + k]) for i in range(0, len(token_ids), k)]


def chunk_text(text: str, tokenizer: Tokenizer, *, k: int = DEFAULT_CHUNK_TOKENS) -> list[Chunk]:
    """Tokenize one segment's text and cut it into chunks of ``k`` tokens."""
    if not text:
        raise InvalidInput("cannot chunk empty text")
    return chunk_ids(tokenizer.encode(text), tokenizer, k=k)


def chunk_ids(token_ids: Sequence[int], tokenizer: Tokenizer, *, k: int) -> list[Chunk]:
    """Cut already-tokenized ids of one segment into chunks."""
    chunks = []
    for index, ids in enumerate(split_tokens(token_ids, k)):
        text = tokenizer.decode(ids)
        chunks.append(Chunk(index=index, token_ids=ids, text=text, content_hash=content_hash(text)))
    return chunks
