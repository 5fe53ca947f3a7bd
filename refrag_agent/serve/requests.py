"""Chat-completion requests: the OpenAI fields we honour, the REFRAG extensions, the plan.

Messages are laid out with the decoder's chat template, ``<|role|>content<|end|>`` each,
then ``<|assistant|>``. Message text is always encoded as plain text: a client cannot
smuggle control tokens in. A message's ``content`` may mix parts:

- ``{"type": "text", "text": ...}``: tokens.
- ``{"type": "refrag_chunks", "embeddings": <tensor>, "token_ids": [[...], ...]}``:
  chunk embeddings computed by the client (encoder outputs, one row per chunk; tensor
  format in :mod:`refrag_agent.engines.wire`). With ``token_ids`` the policy may expand a
  chunk back into its tokens; without, ``n_tokens`` (default ``k`` each) only counts
  what each chunk stands for.
- ``{"type": "refrag_segments", "tenant": ..., "session": ..., "segment_ids": [...]}``:
  segments of the memory store the server was opened on (``serve --memory DIR``).

``refrag: {"budget": {...}, "policy": "similarity"}`` spends an expansion budget
(:class:`~refrag_agent.budget.Budget` fields) over every chunk that has its tokens, the
query being the last user message's text. ``refrag: {"plan": {...}}`` instead carries a
finished placement plan (what :class:`~refrag_agent.engines.RemoteEngine` sends), with
``messages`` left empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from refrag_agent.budget import Budget
from refrag_agent.engines.wire import plan_from_wire, tensor_from_wire, token_ids
from refrag_agent.errors import InvalidInput
from refrag_agent.memory import ChunkBatch, MemoryStore
from refrag_agent.model.assembly import (
    CompressedChunk,
    ExpandedChunk,
    Placement,
    PlacementPlan,
    TokenSpan,
)
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.policies import ChunkFeatures, PolicyInput, PolicyName, make_policy
from refrag_agent.serve.limits import ServeLimits
from refrag_agent.timeline import Scope, SegmentKind

ROLE_KINDS: dict[str, SegmentKind] = {
    "system": SegmentKind.SYSTEM,
    "developer": SegmentKind.SYSTEM,
    "user": SegmentKind.USER,
    "assistant": SegmentKind.ASSISTANT,
    "tool": SegmentKind.TOOL_OUTPUT,
}


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChunksPart(BaseModel):
    """Chunk embeddings from the client; ``token_ids`` make the chunks expandable."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["refrag_chunks"]
    embeddings: dict[str, Any]
    token_ids: list[list[StrictInt]] | None = None
    n_tokens: list[StrictInt] | None = None
    domain: str | None = None


class SegmentsPart(BaseModel):
    """Segments of the server's memory store, by id, within one tenant's session."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["refrag_segments"]
    tenant: str
    session: str
    segment_ids: list[str] = Field(min_length=1)
    domain: str | None = None


ContentPart = Annotated[Union[TextPart, ChunksPart, SegmentsPart], Field(discriminator="type")]  # noqa: UP007


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def parts(self) -> list[TextPart | ChunksPart | SegmentsPart]:
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [TextPart(type="text", text=self.content)]
        return list(self.content)


class RefragOptions(BaseModel):
    """The ``refrag`` request field."""

    model_config = ConfigDict(extra="forbid")

    budget: Budget | None = None
    policy: PolicyName | None = None
    plan: dict[str, Any] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``; unknown OpenAI fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(default_factory=list)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    refrag: RefragOptions | None = None

    def check(self, limits: ServeLimits) -> None:
        """The limits that do not need the plan."""
        if len(self.messages) > limits.max_messages:
            raise InvalidInput(
                f"at most {limits.max_messages} messages per request", got=len(self.messages)
            )
        has_plan = self.refrag is not None and self.refrag.plan is not None
        if has_plan == bool(self.messages):
            raise InvalidInput("give messages, or refrag.plan with no messages")
        if self.n not in (None, 1):
            raise InvalidInput("only n=1 is supported", n=self.n)
        asked = self.max_completion_tokens or self.max_tokens
        if asked is not None and not 1 <= asked <= limits.max_tokens:
            raise InvalidInput(f"max_tokens must be in [1, {limits.max_tokens}]", max_tokens=asked)
        if len(self.stops) > limits.max_stop or any(len(s) > 256 for s in self.stops):
            raise InvalidInput(f"at most {limits.max_stop} stop strings of 256 characters")

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def sampling(self, *, room: int, limits: ServeLimits) -> SamplingParams:
        """Sampling options; without max_tokens, as many as the limit and the decoder allow."""
        asked = self.max_completion_tokens or self.max_tokens
        return SamplingParams(
            max_new_tokens=asked or max(1, min(limits.max_tokens, room)),
            temperature=1.0 if self.temperature is None else self.temperature,
            top_k=self.top_k or 0,
            top_p=1.0 if self.top_p is None else self.top_p,
            stop=self.stops,
            seed=self.seed,
        )


async def fetch_segments(
    chat: ChatRequest, store: MemoryStore | None
) -> dict[tuple[int, int], ChunkBatch]:
    """The stored chunks each ``refrag_segments`` part refers to, by (message, part)."""
    fetched: dict[tuple[int, int], ChunkBatch] = {}
    for m, message in enumerate(chat.messages):
        for p, part in enumerate(message.parts()):
            if not isinstance(part, SegmentsPart):
                continue
            if store is None:
                raise InvalidInput(
                    "this server has no memory store: refrag_segments cannot be used",
                    fix="start it with refrag-agent serve --memory DIR",
                )
            scope = Scope(tenant=part.tenant, session=part.session)
            fetched[(m, p)] = await store.fetch(scope, part.segment_ids)
    return fetched


@dataclass
class _Chunks:
    """The chunks of one part, decoded: what the plan and the policy need."""

    embeddings: torch.Tensor  # (n, encoder_dim)
    token_ids: Sequence[tuple[int, ...]] | None
    n_tokens: list[int]
    kind: SegmentKind
    domain: str
    segment_ids: Sequence[str]


def build_plan(
    chat: ChatRequest,
    model: RefragModel,
    *,
    fetched: Mapping[tuple[int, int], ChunkBatch],
    limits: ServeLimits,
) -> PlacementPlan:
    """The placement plan of a request (blocking: tokenizes, decodes tensors, runs the policy)."""
    width = model.config.projector.in_dim
    vocab = model.shape.vocab_size
    if chat.refrag is not None and chat.refrag.plan is not None:
        return plan_from_wire(
            chat.refrag.plan,
            vocab_size=vocab,
            width=width,
            max_rows=limits.max_chunks,
            max_placements=model.shape.max_positions,
        )
    tok = model.tokenizer

    def template(text: str) -> TokenSpan:
        return TokenSpan(tuple(tok.encode(text, allow_special=True)))

    items: list[TokenSpan | int] = []  # a token span, or the index of a chunk
    groups: list[_Chunks] = []
    used = 0
    for m, message in enumerate(chat.messages):
        kind = ROLE_KINDS[message.role]
        items.append(template(f"<|{kind.value}|>"))
        for p, part in enumerate(message.parts()):
            if isinstance(part, TextPart):
                if part.text:
                    items.append(TokenSpan(tuple(tok.encode(part.text))))
                continue
            where = f"messages[{m}].content[{p}]"
            room = limits.max_chunks - used
            if isinstance(part, ChunksPart):
                group = _client_chunks(part, kind, model, where=where, max_rows=room)
            else:
                group = _stored_chunks(part, kind, fetched[(m, p)], where=where, max_rows=room)
            n = int(group.embeddings.shape[0])
            items.extend(range(used, used + n))
            groups.append(group)
            used += n
        items.append(template("<|end|>"))
    items.append(template("<|assistant|>"))
    if not groups:
        return PlacementPlan(tuple(i for i in items if isinstance(i, TokenSpan)))

    ids: list[tuple[int, ...] | None] = []
    for g in groups:
        ids.extend(g.token_ids if g.token_ids is not None else [None] * len(g.n_tokens))
    n_tokens = [n for g in groups for n in g.n_tokens]
    table = torch.cat([g.embeddings for g in groups])  # (n_chunks, encoder_dim)
    expanded = _expand(chat, model, groups, table, ids)
    placements: list[Placement] = []
    for item in items:
        if isinstance(item, TokenSpan):
            placements.append(item)
        elif item in expanded:
            chunk_ids = ids[item]
            assert chunk_ids is not None  # only chunks with tokens are offered to the policy
            placements.append(ExpandedChunk(chunk_ids, row=item))
        else:
            placements.append(CompressedChunk(item, n_tokens=n_tokens[item]))
    return PlacementPlan(tuple(placements), table)


def _client_chunks(
    part: ChunksPart, kind: SegmentKind, model: RefragModel, *, where: str, max_rows: int
) -> _Chunks:
    vocab = model.shape.vocab_size
    embeddings = tensor_from_wire(
        part.embeddings,
        field=f"{where}.embeddings",
        width=model.config.projector.in_dim,
        max_rows=max_rows,
    )
    n = int(embeddings.shape[0])
    ids: list[tuple[int, ...]] | None = None
    if part.token_ids is not None:
        if len(part.token_ids) != n:
            raise InvalidInput(f"{where}: one token_ids list per embedding row", rows=n)
        ids = [token_ids(t, vocab, field=f"{where}.token_ids") for t in part.token_ids]
        n_tokens = [len(t) for t in ids]
    elif part.n_tokens is not None:
        if len(part.n_tokens) != n or any(c < 0 for c in part.n_tokens):
            raise InvalidInput(f"{where}: one n_tokens >= 0 per embedding row", rows=n)
        n_tokens = list(part.n_tokens)
    else:
        n_tokens = [model.k] * n
    return _Chunks(embeddings, ids, n_tokens, kind, part.domain or kind.value, [""] * n)


def _stored_chunks(
    part: SegmentsPart, kind: SegmentKind, batch: ChunkBatch, *, where: str, max_rows: int
) -> _Chunks:
    if len(batch) > max_rows:
        raise InvalidInput(f"{where}: more chunks than the server accepts", limit=max_rows)
    ids = [tuple(t) for t in batch.token_ids]
    return _Chunks(
        batch.embeddings_tensor().clone(),
        ids,
        [len(t) for t in ids],
        kind,
        part.domain or kind.value,
        batch.segment_ids,
    )


def _expand(
    chat: ChatRequest,
    model: RefragModel,
    groups: Sequence[_Chunks],
    table: torch.Tensor,
    ids: Sequence[tuple[int, ...] | None],
) -> set[int]:
    """The chunks the policy expands under the request's budget (none without a budget)."""
    options = chat.refrag or RefragOptions()
    budget = options.budget or Budget()
    candidates = [i for i, t in enumerate(ids) if t is not None]
    held = sum(len(ids[i] or ()) for i in candidates)
    if not candidates or (budget.total_allowance(held) == 0 and not budget.pinned):
        return set()
    name: PolicyName = options.policy or ("learned" if model.policy is not None else "similarity")
    policy = make_policy(name, network=model.policy)
    kinds = [(g.kind, g.domain, s) for g in groups for s in g.segment_ids]
    features = tuple(
        ChunkFeatures(
            kind=kinds[i][0],
            domain=kinds[i][1],
            n_tokens=len(ids[i] or ()),
            position=position,
            segment_id=kinds[i][2],
        )
        for position, i in enumerate(candidates)
    )
    query = _query_text(chat)
    vector = model.encode([query])[0] if query else torch.zeros(table.shape[1])
    selection = policy.select(PolicyInput(table[candidates], vector, features), budget)
    return {candidates[j] for j in selection.indices}


def _query_text(chat: ChatRequest) -> str:
    """The text of the last user message: what the chunks are scored against."""
    for message in reversed(chat.messages):
        if message.role == "user":
            return "".join(p.text for p in message.parts() if isinstance(p, TextPart))
    return ""
