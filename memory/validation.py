"""Checks on what a caller hands the store; each failure is an InvalidInput, before any write."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from refrag_agent.errors import InvalidInput, ScopeError
from refrag_agent.timeline import MAX_ID_LENGTH, Chunk, Segment, content_hash

_MAX_TOKEN_ID = 2**31 - 1


def check_text(value: str, field: str, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field, type=type(value).__name__)
    if not value and not allow_empty:
        raise InvalidInput(f"{field} is empty", field=field)
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL byte", field=field, at=value.index("\x00"))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInput(
            f"{field} is not valid unicode (lone surrogate)", field=field, at=e.start
        ) from e


def check_length(text: str, *, max_chars: int) -> None:
    """A segment's text against the size limit; cheap, so writers check it before chunking."""
    if len(text) > max_chars:
        raise InvalidInput(
            "segment text is over the size limit",
            chars=len(text),
            limit=max_chars,
            fix="split the text into several segments, or raise max_segment_chars",
        )


def check_segment(
    segment: Segment, chunks: Sequence[Chunk], *, max_chars: int, max_chunks: int
) -> list[str]:
    """Validate a segment and its chunks; return the chunks' recomputed content hashes."""
    if not isinstance(segment, Segment):
        raise InvalidInput("expected a Segment", type=type(segment).__name__)
    check_text(segment.id, "segment.id")
    if len(segment.id) > MAX_ID_LENGTH:
        raise InvalidInput("segment.id is too long", length=len(segment.id), limit=MAX_ID_LENGTH)
    check_text(segment.text, "segment.text")
    check_length(segment.text, max_chars=max_chars)
    check_text(segment.domain, "segment.domain")
    if len(segment.domain) > MAX_ID_LENGTH:
        raise InvalidInput("segment.domain is too long", length=len(segment.domain))
    if segment.source is not None:
        check_text(segment.source, "segment.source", allow_empty=True)
    _check_metadata(segment.metadata)
    if isinstance(chunks, (str, bytes)) or not chunks:
        raise InvalidInput("a segment needs at least one chunk", segment_id=segment.id)
    if len(chunks) > max_chunks:
        raise InvalidInput(
            "segment has more chunks than the limit", chunks=len(chunks), limit=max_chunks
        )
    hashes = []
    for position, chunk in enumerate(chunks):
        if not isinstance(chunk, Chunk):
            raise InvalidInput("expected Chunk objects", position=position)
        if chunk.index != position:
            raise InvalidInput(
                "chunk indexes must be 0, 1, 2 ... in order", position=position, index=chunk.index
            )
        if not chunk.token_ids:
            raise InvalidInput("a chunk has no tokens", index=chunk.index)
        for token in chunk.token_ids:
            if (
                not isinstance(token, int)
                or isinstance(token, bool)
                or not (0 <= token <= _MAX_TOKEN_ID)
            ):
                raise InvalidInput("token ids must be ints in [0, 2**31)", index=chunk.index)
        check_text(chunk.text, f"chunks[{position}].text", allow_empty=True)
        digest = content_hash(chunk.text)
        if chunk.content_hash != digest:
            raise InvalidInput("chunk content_hash does not match its text", index=chunk.index)
        hashes.append(digest)
    return hashes


def _check_metadata(metadata: dict[str, Any]) -> None:
    try:
        encoded = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidInput("segment.metadata must be JSON-serialisable", error=str(e)) from e
    check_text(encoded, "segment.metadata", allow_empty=True)


def check_tenant(tenant: str) -> str:
    """A tenant id on its own (calls that take a tenant rather than a full scope)."""
    if not isinstance(tenant, str) or not tenant:
        raise ScopeError("tenant must be a non-empty string", field="tenant")
    if len(tenant) > MAX_ID_LENGTH:
        raise ScopeError("tenant is too long", field="tenant", length=len(tenant))
    try:
        check_text(tenant, "tenant")
    except InvalidInput as e:
        raise ScopeError(e.message, **e.context) from e
    return tenant
