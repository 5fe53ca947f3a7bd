"""The conversation as data: scopes, segment kinds, segments and their chunks.

A conversation is a timeline of :class:`Segment` rows inside one :class:`Scope`. Segments
are cut into :class:`Chunk` s of ``k`` decoder tokens (:mod:`refrag_agent.model.chunker`);
the store keeps both (``refrag_agent.memory``).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from refrag_agent.errors import ScopeError

MAX_ID_LENGTH = 1024


class SegmentKind(str, Enum):
    """What a segment is; its default domain is its kind's value."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL_CALL = "tool_call"
    TOOL_OUTPUT = "tool_output"
    DOCUMENT = "document"


def _check_id(value: object, field: str) -> str:
    # ScopeError is not a ValueError, so pydantic lets it through unwrapped.
    if not isinstance(value, str) or not value:
        raise ScopeError(f"{field} must be a non-empty string", field=field, value=value)
    if len(value) > MAX_ID_LENGTH:
        raise ScopeError(
            f"{field} is longer than {MAX_ID_LENGTH} characters", field=field, length=len(value)
        )
    if "\x00" in value:
        raise ScopeError(f"{field} must not contain NUL bytes", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ScopeError(f"{field} is not valid unicode (lone surrogate?)", field=field) from e
    return value


class Scope(BaseModel):
    """Who a memory belongs to: a tenant and one of its sessions.

    Every store call takes a scope and the store applies it itself. Retrieval may reach
    across the sessions of one tenant, never across tenants.
    """

    model_config = ConfigDict(frozen=True)

    tenant: str
    session: str

    @field_validator("tenant", "session", mode="before")
    @classmethod
    def _valid(cls, value: object, info: Any) -> str:
        return _check_id(value, info.field_name)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _new_id() -> str:
    return uuid.uuid4().hex


class Segment(BaseModel):
    """One entry of a timeline: a turn, a tool call or output, a document.

    ``seq`` is the segment's order in its session, assigned by the store on append
    (``-1`` until then). ``domain`` defaults to the kind's value and is what per-domain
    budgets key on.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=_new_id)
    scope: Scope
    kind: SegmentKind
    text: str
    domain: str = ""
    source: str | None = None
    seq: int = -1
    created_at: datetime = Field(default_factory=_now)
    n_tokens: int = 0
    n_chunks: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        if not self.domain:
            object.__setattr__(self, "domain", self.kind.value)


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
