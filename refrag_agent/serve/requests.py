"""Chat-completion requests: the OpenAI fields we honour, the REFRAG extensions, the plan.

Messages are laid out like an SDK session, by the context builder
(:mod:`refrag_agent.context`) and the template (:mod:`refrag_agent.template`): each
message is a segment (id ``m<index>``, ``seq`` its index, kind from its role), framed
header, chunks, end; system messages go first and the query (the last user message)
comes after every earlier message, followed only by the tool exchange written after it
(in order), then the generation prompt. System and
developer messages and the last :data:`LAST_TURNS` user/assistant messages stay tokens;
older messages go in as chunk embeddings unless the expansion budget (``refrag.budget``,
else the server's default) lets the policy expand them. Message text is always encoded
as plain text: a client cannot smuggle control tokens in.

Roles: ``system``, ``developer``, ``user``, ``assistant`` (its ``tool_calls`` become
``tool_call`` segments, as the SDK stores them), ``tool`` (a ``tool_output`` segment) and
``document`` (a REFRAG extension: a document segment, as ``Session.add_document`` stores
one). A message's ``content`` may mix parts:

- ``{"type": "text", "text": ...}``: the message's own text.
- ``{"type": "refrag_chunks", "embeddings": <tensor>, "token_ids": [[...], ...]}``:
  chunk embeddings computed by the client (encoder outputs, one row per chunk; tensor
  format in :mod:`refrag_agent.engines.wire`). With ``token_ids`` the policy may expand a
  chunk back into its tokens; without, ``n_tokens`` (default ``k`` each) only counts
  what each chunk stands for.
- ``{"type": "refrag_segments", "tenant": ..., "session": ..., "segment_ids": [...]}``:
  segments of the memory store the server was opened on (``serve --memory DIR``); a key
  bound to tenants reads only theirs (:func:`fetch_segments`).

Compressed content is context the client chose to send compressed: each ``refrag_chunks``
part (id ``m<index>.<part>``) and each stored segment (its own id) is a segment of its
own, framed with its message's role, that only the budget expands, even in a last turn.

``refrag: {"budget": {...}, "policy": "similarity"}`` spends an expansion budget
(:class:`~refrag_agent.budget.Budget` fields; ``pinned`` takes the ids above) over every
chunk that has its tokens, scored against the query's text. ``refrag: {"plan": {...}}``
instead carries a finished placement plan (what
:class:`~refrag_agent.engines.RemoteEngine` sends), with ``messages`` left empty.

``tools`` (OpenAI function schemas) put the SDK's tools preamble in front of the
messages; ``tool_choice`` ``"required"`` (or one named function, the only one then
offered) makes the answer start with the call marker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from refrag_agent.budget import Budget
from refrag_agent.context import (
    ChunkSlot,
    ContextSegment,
    capacity,
    draft,
    order_segments,
    pinned_ids,
    place,
    select,
    within_room,
)
from refrag_agent.engines.wire import plan_from_wire, tensor_from_wire, token_ids
from refrag_agent.errors import InvalidInput
from refrag_agent.memory import ChunkBatch, MemoryStore
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.policies import PolicyName, make_policy
from refrag_agent.serve.auth import ApiKey, forbidden
from refrag_agent.serve.errors import ApiError
from refrag_agent.serve.limits import ServeLimits
from refrag_agent.template import REFRAG_TEMPLATE, TEMPLATE_STOPS, ChatTemplate
from refrag_agent.timeline import Scope, Segment, SegmentKind
from refrag_agent.tools import (
    NoCall,
    Tool,
    Toolbox,
    ToolCall,
    parse_output,
    text_before_call,
    tools_preamble,
)

ROLE_KINDS: dict[str, SegmentKind] = {
    "system": SegmentKind.SYSTEM,
    "developer": SegmentKind.SYSTEM,
    "user": SegmentKind.USER,
    "assistant": SegmentKind.ASSISTANT,
    "tool": SegmentKind.TOOL_OUTPUT,
    "document": SegmentKind.DOCUMENT,
}
LAST_TURNS = 2  # user/assistant messages that stay tokens, as the SDK's pin_last_turns
# Sampling works in float32: a denormal temperature overflows the logits it divides, and a
# top_p that rounds to 0 drops every token. Sampling this cold is all but greedy already
# (a logit 1e-3 below the top one is e^-100 times less likely), and a top_p this small
# keeps only the top token unless it is less likely than that, so below it decoding is
# greedy.
GREEDY_BELOW = 1e-5
Encode = Callable[[Sequence[str]], torch.Tensor]  # texts -> (n, encoder width) float32 rows
# The scope a request's own messages are seen in by the pinning rule; nothing is stored.
_REQUEST = Scope(tenant="request", session="request")


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


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str


class ToolCallItem(BaseModel):
    """A call an earlier assistant message made (OpenAI's ``tool_calls`` items)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall

    def text(self, where: str) -> str:
        """The call as the SDK stores it: the body of its ``tool_call`` segment."""
        try:
            arguments = json.loads(self.function.arguments or "{}")
        except json.JSONDecodeError as e:
            raise InvalidInput(f"{where}.function.arguments is not JSON", field=where) from e
        if not isinstance(arguments, dict):
            raise InvalidInput(f"{where}.function.arguments must be a JSON object", field=where)
        return ToolCall(id=self.id, name=self.function.name, arguments=arguments).text


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "document"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallItem] | None = None
    tool_call_id: str | None = None

    def parts(self) -> list[TextPart | ChunksPart | SegmentsPart]:
        """The content as a list of parts (a string is one text part)."""
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [TextPart(type="text", text=self.content)]
        return list(self.content)

    def text(self) -> str:
        """The message's text parts, one per line (as ``Session.add_messages`` joins them)."""
        return "\n".join(p.text for p in self.parts() if isinstance(p, TextPart))


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


class ToolSpec(BaseModel):
    """One entry of ``tools``: ``{"type": "function", "function": {...}}``."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: FunctionSpec


class FunctionName(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str


class NamedToolChoice(BaseModel):
    """``tool_choice`` naming one function: ``{"type": "function", "function": {"name"}}``."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: FunctionName


class RefragOptions(BaseModel):
    """The ``refrag`` request field."""

    model_config = ConfigDict(extra="forbid")

    budget: Budget | None = None
    policy: PolicyName | None = None
    plan: dict[str, Any] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: StrictBool = False


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``; unknown OpenAI fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(default_factory=list)
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)] | None = None
    top_p: Annotated[float, Field(strict=True, gt=0, le=1)] | None = None
    top_k: Annotated[StrictInt, Field(ge=0)] | None = None
    stop: str | list[str] | None = None
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] | None = None
    n: StrictInt | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    ignore_eos: StrictBool = False
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
        if has_plan and self.tools:
            raise InvalidInput("tools go with messages, not with refrag.plan")
        if self.tool_choice not in (None, "none", "auto") and not self.tools:
            raise InvalidInput("tool_choice needs tools", tool_choice=str(self.tool_choice))
        if isinstance(self.tool_choice, NamedToolChoice) and self.tools:
            name = self.tool_choice.function.name
            if name not in {t.function.name for t in self.tools}:
                raise InvalidInput("tool_choice names a function that is not in tools", name=name)
        if self.n not in (None, 1):
            raise InvalidInput("only n=1 is supported", n=self.n)
        asked = self.asked_tokens
        if asked is not None and asked > limits.max_tokens:
            raise InvalidInput(f"max_tokens must be in [1, {limits.max_tokens}]", max_tokens=asked)
        # Template tokens end answers anyway, and RemoteEngine sends them all: not counted.
        own = [s for s in self.stops if s not in TEMPLATE_STOPS]
        if len(own) > limits.max_stop or any(len(s) > 256 for s in own):
            raise InvalidInput(
                f"at most {limits.max_stop} stop strings of 256 characters, besides the "
                "template's tokens"
            )

    @property
    def asked_tokens(self) -> int | None:
        """``max_completion_tokens``, else ``max_tokens`` (None: neither given)."""
        return self.max_tokens if self.max_completion_tokens is None else self.max_completion_tokens

    @property
    def stops(self) -> tuple[str, ...]:
        """The client's stop strings."""
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def sampling(
        self, *, room: int, limits: ServeLimits, template_stops: tuple[str, ...]
    ) -> SamplingParams:
        """Sampling options; without max_tokens, as many as the limit and the decoder allow.

        Decoding stops at the client's stop strings and at ``template_stops``, unless
        ``ignore_eos`` asks for every token up to max_tokens. A temperature or top_p below
        :data:`GREEDY_BELOW` decodes greedily.
        """
        asked = self.asked_tokens
        stops = self.stops if self.ignore_eos else (*self.stops, *template_stops)
        temperature = 1.0 if self.temperature is None else self.temperature
        top_p = 1.0 if self.top_p is None else self.top_p
        greedy = temperature < GREEDY_BELOW or top_p < GREEDY_BELOW
        return SamplingParams(
            max_new_tokens=asked or max(1, min(limits.max_tokens, room)),
            temperature=0.0 if greedy else temperature,
            top_k=self.top_k or 0,
            top_p=1.0 if greedy else top_p,
            stop=tuple(dict.fromkeys(stops)),
            seed=self.seed,
        )

    def offered(self) -> tuple[Toolbox | None, bool]:
        """The tools offered to the model (None: no tools), and whether it must call one."""
        if not self.tools or self.tool_choice == "none":
            return None, False
        specs = self.tools
        if isinstance(self.tool_choice, NamedToolChoice):
            specs = [t for t in specs if t.function.name == self.tool_choice.function.name]
        toolbox = Toolbox(
            Tool.from_schema(t.model_dump(exclude_none=True), _run_by_client) for t in specs
        )
        return toolbox, self.tool_choice not in (None, "auto")


def _run_by_client(**arguments: Any) -> None:
    """What a served tool runs as: nothing here; the client runs its tools."""
    raise InvalidInput("a served tool runs on the client", arguments=sorted(arguments))


@dataclass(frozen=True)
class Prepared:
    """One request ready to decode: its plan, its sampling, and how to read the answer.

    ``tools``: the tools offered (None when the answer is plain text); ``forced``: the
    prompt ends in the call marker, so the answer is a call's body.
    """

    plan: PlacementPlan
    params: SamplingParams
    tools: Toolbox | None = None
    forced: bool = False
    template: ChatTemplate = REFRAG_TEMPLATE

    def answer(self, g: Generation) -> tuple[dict[str, Any], str]:
        """The assistant message (OpenAI's shape) and OpenAI's finish reason."""
        reason = "length" if g.finish_reason == "length" else "stop"
        if self.tools is None:
            return {"role": "assistant", "content": g.text}, reason
        template = self.template
        output = f"{template.tool_call}{g.text}" if self.forced else g.text
        parsed = parse_output(output, tools=self.tools, template=template)
        if isinstance(parsed, NoCall):
            return {"role": "assistant", "content": parsed.text}, reason
        before = text_before_call(output, template).strip()
        if not isinstance(parsed, ToolCall):  # a call that cannot be run: its words only
            return {"role": "assistant", "content": before}, reason
        function = {"name": parsed.name, "arguments": json.dumps(parsed.arguments)}
        call = {"id": parsed.id, "type": "function", "function": function}
        return {"role": "assistant", "content": before or None, "tool_calls": [call]}, "tool_calls"


async def fetch_segments(
    chat: ChatRequest, store: MemoryStore | None, *, key: ApiKey | None = None
) -> dict[tuple[int, int], ChunkBatch]:
    """The stored chunks each ``refrag_segments`` part refers to, by (message, part).

    A tenant ``key`` may not read is a 403 before the store is read; segments missing
    from the scope (or a scope that does not exist) are one 404. Neither answer says
    whether the tenant or its sessions exist.
    """
    parts = [
        (m, p, part)
        for m, message in enumerate(chat.messages)
        for p, part in enumerate(message.parts())
        if isinstance(part, SegmentsPart)
    ]
    if key is not None and not all(key.may_read(part.tenant) for _, _, part in parts):
        raise forbidden()
    if not parts:
        return {}
    if store is None:
        raise InvalidInput(
            "this server has no memory store: refrag_segments cannot be used",
            fix="start it with refrag-agent serve --memory DIR",
        )
    fetched: dict[tuple[int, int], ChunkBatch] = {}
    for m, p, part in parts:
        scope = Scope(tenant=part.tenant, session=part.session)
        try:
            fetched[(m, p)] = await store.fetch(scope, part.segment_ids)
        except InvalidInput as e:
            raise ApiError(
                404, "segments not found in that tenant's session", kind="not_found"
            ) from e
    return fetched


def build_plan(
    chat: ChatRequest,
    model: RefragModel,
    *,
    fetched: Mapping[tuple[int, int], ChunkBatch],
    limits: ServeLimits,
    budget: Budget,
    encode: Encode | None = None,
) -> Prepared:
    """The plan and sampling of a request (blocking: tokenizes, encodes, runs the policy).

    ``budget`` is the server's default, spent when the request names none. The answer's
    room (``max_tokens``, else the server's limit as far as the decoder allows) is kept
    first; the budget expands chunks only into the positions left after that. ``encode``
    turns texts into encoder rows (default: the model's encoder, called alone; the app
    passes one that shares encoder calls between concurrent requests).
    """
    encode = encode or model.encode
    template = model.template
    max_positions = model.shape.max_positions
    if chat.refrag is not None and chat.refrag.plan is not None:
        plan = plan_from_wire(
            chat.refrag.plan,
            vocab_size=model.shape.vocab_size,
            width=model.config.projector.in_dim,
            max_rows=limits.max_chunks,
            max_placements=max_positions,
        )
        room = max_positions - plan.n_positions
        params = chat.sampling(room=room, limits=limits, template_stops=template.stop)
        model.check_fits([plan], params.max_new_tokens)
        return Prepared(plan, params, template=template)
    options = chat.refrag or RefragOptions()
    budget = options.budget or budget
    tools, forced = chat.offered()
    context = _segments(chat, model, fetched, budget=budget, limits=limits)
    d = draft(
        context.segments,
        template=template,
        tokenizer=model.tokenizer,
        prefix=tools_preamble(tools, template) if tools else "",
        suffix=template.generation_prompt + (template.tool_call if forced else ""),
    )
    table = context.table(encode, pinned=False)
    least = place(d, ()).plan(table)  # the pins as tokens, every other chunk compressed
    params = chat.sampling(
        room=max_positions - least.n_positions,
        limits=limits,
        template_stops=template.stops(tool_calls=tools is not None),
    )
    if least.n_positions + params.max_new_tokens > max_positions:
        raise InvalidInput(
            "the messages do not fit the decoder's positions, even compressed",
            positions=least.n_positions,
            max_tokens=params.max_new_tokens,
            max_positions=max_positions,
            fix="send fewer or shorter messages (the last turns stay tokens), or ask for "
            "fewer max_tokens",
        )
    pinned = d.pinned_chunks()
    expandable = sum(d.chunks[i].n_tokens for i in d.expandable if i not in pinned)
    room = capacity(max_positions, params.max_new_tokens) - least.n_positions
    spend = within_room(budget, expandable, max(0, room))
    leave_out = budget.unexpanded == "left_out"  # the unexpanded chunks are not fed
    if not spend.total_allowance(expandable):  # nothing to choose: the pins alone
        alone = place(d, (), leave_out=True).plan(table) if leave_out else least
        return Prepared(alone, params, tools, forced, template)
    table = context.table(encode, pinned=True)
    name = options.policy or ("learned" if model.policy is not None else "similarity")
    asked = _query(chat)
    query = "" if asked is None else chat.messages[asked].text()
    vector = encode([query])[0] if query else torch.zeros(table.shape[1])
    choice = select(d, make_policy(name, network=model.policy), table, vector, spend)
    return Prepared(
        place(d, choice, leave_out=leave_out).plan(table), params, tools, forced, template
    )


@dataclass
class _Context:
    """A request's segments in prompt order and their chunks' embeddings: ``given`` (client
    or stored chunks) or, where ``None``, encoded from the chunks' text when asked for."""

    segments: list[ContextSegment]
    given: list[torch.Tensor | None]
    width: int

    def table(self, encode: Encode, *, pinned: bool) -> torch.Tensor:
        """``(n_chunks, width)``, one row per chunk in draft order. Pinned chunks always go
        in as tokens, so only a policy reads their rows: zeros unless ``pinned``."""
        todo = [
            i
            for i, (s, t) in enumerate(zip(self.segments, self.given, strict=True))
            if t is None and s.chunks and (pinned or not s.pinned)
        ]
        texts = [c.text for i in todo for c in self.segments[i].chunks]
        vectors = encode(texts) if texts else torch.empty(0, self.width)  # (n, width)
        at = 0
        for i in todo:  # kept: a second call encodes only what the first left out
            n = len(self.segments[i].chunks)
            self.given[i] = vectors[at : at + n]
            at += n
        blocks = [
            torch.zeros(len(s.chunks), self.width) if t is None else t
            for s, t in zip(self.segments, self.given, strict=True)
        ]
        return torch.cat(blocks) if blocks else torch.empty(0, self.width)


def _segments(
    chat: ChatRequest,
    model: RefragModel,
    fetched: Mapping[tuple[int, int], ChunkBatch],
    *,
    budget: Budget,
    limits: ServeLimits,
) -> _Context:
    """The messages as context segments in prompt order, with the client's and the store's
    chunk embeddings (text chunks are encoded later, by :meth:`_Context.table`)."""
    timeline = _timeline(chat)
    pinned = pinned_ids(timeline, budget, last_turns=LAST_TURNS)
    asked = _query(chat)
    order = order_segments(timeline, query_id=None if asked is None else f"m{asked}")
    segments: list[ContextSegment] = []
    tables: list[torch.Tensor | None] = []  # None: encoded from the chunks' text, later
    used = 0  # rows of client and stored chunks, against limits.max_chunks

    def add(segment: ContextSegment, table: torch.Tensor | None) -> None:
        segments.append(segment)
        tables.append(table)

    def text(m: int, sid: str, kind: SegmentKind, body: str, *, pin: bool) -> None:
        chunks = model.chunk(body) if body else []
        slots = tuple(ChunkSlot(c.token_ids, c.n_tokens, c.index, c.text) for c in chunks)
        add(ContextSegment(sid, kind, kind.value, m, slots, pinned=pin), None)

    for m in (s.seq for s in order):
        message, kind = chat.messages[m], ROLE_KINDS[chat.messages[m].role]
        run: list[str] = []  # text parts not laid out yet
        start = 0  # the part that opened the run
        first = len(segments)
        for p, part in enumerate(message.parts()):
            if isinstance(part, TextPart):
                start = p if not run else start
                run.append(part.text)
                continue
            if run:
                text(m, _run_id(m, start), kind, "\n".join(run), pin=f"m{m}" in pinned)
                run = []
            where = f"messages[{m}].content[{p}]"
            domain = part.domain or kind.value
            if isinstance(part, ChunksPart):
                sid = f"m{m}.{p}"
                slots, embeddings = _client_chunks(
                    part, model, where=where, max_rows=limits.max_chunks - used
                )
                pin = budget.is_pinned(sid)
                add(ContextSegment(sid, kind, domain, m, slots, pinned=pin), embeddings)
                used += len(slots)
                continue
            batch = fetched[(m, p)]
            if used + len(batch) > limits.max_chunks:
                raise InvalidInput(f"{where}: more chunks than the server accepts", field=where)
            used += len(batch)
            for sid, slots, embeddings in _stored_chunks(batch):
                pin = budget.is_pinned(sid)
                add(ContextSegment(sid, kind, domain, m, slots, pinned=pin), embeddings)
        if run or (len(segments) == first and not message.tool_calls):
            text(m, _run_id(m, start), kind, "\n".join(run), pin=f"m{m}" in pinned)
        for j, call in enumerate(message.tool_calls or ()):
            sid = f"m{m}.call{j}"
            body = call.text(f"messages[{m}].tool_calls[{j}]")
            text(m, sid, SegmentKind.TOOL_CALL, body, pin=budget.is_pinned(sid))
    return _Context(segments, tables, model.config.projector.in_dim)


def _run_id(m: int, start: int) -> str:
    """A message's text segment: ``m<index>``, or ``m<index>.<part>`` for text that
    follows compressed content in the same message."""
    return f"m{m}" if start == 0 else f"m{m}.{start}"


def _timeline(chat: ChatRequest) -> list[Segment]:
    """One timeline segment per message (id ``m<index>``, ``seq`` its index), for the SDK's
    order and pinning rules; an assistant message with calls and no text is a tool call,
    not a turn."""
    out = []
    for m, message in enumerate(chat.messages):
        kind = ROLE_KINDS[message.role]
        if kind is SegmentKind.ASSISTANT and message.tool_calls and not message.text():
            kind = SegmentKind.TOOL_CALL
        out.append(Segment(id=f"m{m}", scope=_REQUEST, kind=kind, text="", seq=m))
    return out


def _client_chunks(
    part: ChunksPart, model: RefragModel, *, where: str, max_rows: int
) -> tuple[tuple[ChunkSlot, ...], torch.Tensor]:
    """A ``refrag_chunks`` part as chunk slots and their embeddings (checked, decoded)."""
    vocab = model.shape.vocab_size
    embeddings = tensor_from_wire(
        part.embeddings,
        field=f"{where}.embeddings",
        width=model.config.projector.in_dim,
        max_rows=max_rows,
    )
    n = int(embeddings.shape[0])
    if part.token_ids is not None:
        if len(part.token_ids) != n:
            raise InvalidInput(f"{where}: one token_ids list per embedding row", rows=n)
        ids = [token_ids(t, vocab, field=f"{where}.token_ids") for t in part.token_ids]
        slots = tuple(ChunkSlot(t, len(t), i) for i, t in enumerate(ids))
    elif part.n_tokens is not None:
        if len(part.n_tokens) != n or any(c < 0 for c in part.n_tokens):
            raise InvalidInput(f"{where}: one n_tokens >= 0 per embedding row", rows=n)
        slots = tuple(ChunkSlot(None, c, i) for i, c in enumerate(part.n_tokens))
    else:
        slots = tuple(ChunkSlot(None, model.k, i) for i in range(n))
    return slots, embeddings


def _stored_chunks(
    batch: ChunkBatch,
) -> list[tuple[str, tuple[ChunkSlot, ...], torch.Tensor]]:
    """Each stored segment of ``batch`` (timeline order): its id, chunk slots, embeddings."""
    rows_of: dict[str, list[int]] = {}
    for row, sid in enumerate(batch.segment_ids):
        rows_of.setdefault(sid, []).append(row)
    table = batch.embeddings_tensor()
    ids = batch.token_ids
    out = []
    for sid, rows in rows_of.items():
        slots = tuple(
            ChunkSlot(tuple(ids[r]), len(ids[r]), int(batch.chunk_index[r]), batch.texts[r])
            for r in rows
        )
        out.append((sid, slots, table[torch.tensor(rows, dtype=torch.long)]))
    return out


def _query(chat: ChatRequest) -> int | None:
    """The last user message's index: the query the chunks are scored against; only the
    messages after it (a tool exchange) follow it in the layout, as in the SDK."""
    users = [m for m, message in enumerate(chat.messages) if message.role == "user"]
    return users[-1] if users else None
