"""Cut the text of one segment into chunks of ``k`` decoder tokens.

A chunk never spans two segments: each segment is chunked on its own, and only its last
chunk may be shorter than ``k``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from refrag_agent.errors import InvalidInput
from refrag_agent.model.tokenizer import Tokenizer

DEFAULT_CHUNK_TOKENS = 16


def content_hash(text: str) -> str:
    """Hash of what the encoder reads; the embedding cache keys on it with the encoder."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Chunk:
    """``k`` (or fewer) decoder tokens of one segment, with their text and content hash."""

    index: int
    token_ids: tuple[int, ...]
    text: str
    content_hash: str

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


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
