"""Agent and Session: the async entry points of refrag-agent.

::

    async with Agent.open(model=None, memory="./agent-memory") as agent:
        chat = agent.session(tenant="acme", session="alice-1")
        await chat.add_turn("user", "My locker code is 4821.")
        reply = await chat.respond("What is my locker code?", budget=Budget(p=0.1))
        print(reply.text, reply.plan.positions_fed, reply.usage.ttft_s)

Writes never call the decoder: a segment is chunked, encoded (or found in the embedding
cache) and stored; its size is checked before it is chunked. ``respond`` checks its
options and the query (which must fit the decoder's window as tokens), lays the session
out with the query last, lets the policy choose which chunks are expanded under the
budget, decodes, appends the query and the answer as turns and returns the answer with
its plan.

A call is atomic from the caller's side: one that fails before the decoder has answered
(a bad option, a query too long, a plan that does not fit, an engine that cannot be
reached) stores nothing. The query is stored as soon as the decoder's first output
arrives, before the caller sees it; from then on it stays (with the tool calls and
outputs made so far), even if decoding fails or the consumer of ``stream`` stops early
(``break`` or cancellation). The partial answer is never stored: memory holds the query
and nothing half-written.

Forgetting (``Session.delete``, ``Session.forget``, ``Agent.forget_tenant``) deletes from
the store, then rewrites the plan log without the plans that hold the forgotten data.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, Literal

from refrag_agent.budget import Budget
from refrag_agent.context import (
    check_placement,
)
from refrag_agent.engines import Engine, open_engine
from refrag_agent.errors import BudgetError, InvalidInput, ScopeError
from refrag_agent.lifecycle import AsyncClosing, Opening
from refrag_agent.logs import get_logger
from refrag_agent.memory import AppendResult, MemoryStore
from refrag_agent.memory.validation import check_length, check_segment, check_tenant
from refrag_agent.memory_calls import MemoryHit, append_messages, delete_segments, search_memory
from refrag_agent.messages import Messages
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.plan import ContextPlan, PlanLog
from refrag_agent.planning import Planner, QueryTurn
from refrag_agent.policies import ExpansionPolicy, PolicyName, make_policy
from refrag_agent.reply import Reply, ReplyDone, StreamEvent, TextDelta, finish_reply
from refrag_agent.timeline import Chunk, Scope, Segment, SegmentKind
from refrag_agent.tools import (
    Toolbox,
    ToolCallEvent,
    ToolLike,
    ToolLoopResult,
    ToolOutputEvent,
    iter_tool_loop,
    pairing_metadata,
    tools_preamble,
)

log = get_logger(__name__)

PLAN_FILE = "plans.jsonl"
Recall = Literal["session", "tenant"]


class Agent(AsyncClosing):
    """One model and one memory, shared by many sessions. Open with :meth:`open`."""

    def __init__(
        self,
        *,
        engine: Engine,
        owns_engine: bool,
        store: MemoryStore,
        owns_store: bool,
        budget: Budget,
        policy: ExpansionPolicy,
        pin_last_turns: int,
        sampling: SamplingParams,
        plan_log: PlanLog | None,
    ) -> None:
        self.model = engine.model
        self.store = store
        self.budget = budget
        self.policy = policy
        self.pin_last_turns = pin_last_turns
        self.sampling = sampling
        self.plan_log = plan_log
        self._engine = engine
        self._owns_engine = owns_engine
        self._owns_store = owns_store
        self._closed = False

    @property
    def planner(self) -> Planner:
        """Plans sessions' calls with the agent's current store, model, policy and pins."""
        return Planner(self.store, self.model, self.policy, self.pin_last_turns)

    @classmethod
    def open(
        cls,
        model: Any = None,
        memory: str | Path | MemoryStore = "./agent-memory",
        *,
        engine: Engine | None = None,
        budget: Budget | None = None,
        policy: PolicyName | ExpansionPolicy | None = None,
        pin_last_turns: int = 2,
        sampling: SamplingParams | None = None,
    ) -> Opening[Agent]:
        """Open an agent: ``await Agent.open(...)`` or ``async with Agent.open(...) as a``.

        ``model``: ``None`` (the bundled default), a checkpoint directory or a
        :class:`RefragModel`, decoded in this process; or the ``http://`` URL of a
        ``refrag-agent serve`` server, which then decodes. ``engine``: instead of
        ``model``, any :class:`~refrag_agent.engines.Engine` (local, remote, vLLM or
        scripted); the agent plans with ``engine.model`` (``model`` may only repeat it).
        ``memory``: a folder for the embedded store (LanceDB + SQLite) or an open
        :class:`~refrag_agent.memory.MemoryStore`. An engine or store passed in is left
        open when the agent closes. ``budget`` is the default expansion budget of every
        session (default: nothing expanded beyond the pins). ``policy`` defaults to the
        checkpoint's learned policy when it has one, else "similarity".
        """
        return Opening(
            cls._open(
                model,
                memory,
                engine=engine,
                budget=budget,
                policy=policy,
                pin_last_turns=pin_last_turns,
                sampling=sampling or SamplingParams(max_new_tokens=64),
            )
        )

    @classmethod
    async def _open(
        cls,
        model: Any,
        memory: str | Path | MemoryStore,
        *,
        engine: Engine | None,
        budget: Budget | None,
        policy: PolicyName | ExpansionPolicy | None,
        pin_last_turns: int,
        sampling: SamplingParams,
    ) -> Agent:
        if pin_last_turns < 0:
            raise InvalidInput("pin_last_turns must be >= 0", value=pin_last_turns)
        budget = Budget() if budget is None else _checked_budget(budget)
        opened = await open_engine(model, engine=engine)
        loaded = opened.model
        if policy is None:  # the checkpoint's learned policy, else query similarity
            policy = "learned" if loaded.policy is not None else "similarity"
        try:
            chosen = (
                make_policy(policy, network=loaded.policy) if isinstance(policy, str) else policy
            )
            if isinstance(memory, MemoryStore):
                store, owns, plan_log = memory, False, None
            else:
                folder = Path(memory)
                store = await MemoryStore.open(folder, encoder=loaded.encoder)
                owns, plan_log = True, PlanLog(folder / PLAN_FILE)
        except BaseException:
            if engine is None:
                await opened.aclose()  # a remote engine holds connections
            raise
        return cls(
            engine=opened,
            owns_engine=engine is None,
            store=store,
            owns_store=owns,
            budget=budget,
            policy=chosen,
            pin_last_turns=pin_last_turns,
            sampling=sampling,
            plan_log=plan_log,
        )

    def session(
        self,
        *,
        tenant: str,
        session: str,
        budget: Budget | None = None,
        recall: Recall = "session",
    ) -> Session:
        """A conversation of ``tenant``; ``budget`` overrides the agent's default.

        ``recall="tenant"`` also brings in segments of the tenant's other sessions that
        match the query (never another tenant's).
        """
        self._check_open()
        if recall not in ("session", "tenant"):
            raise InvalidInput("recall must be 'session' or 'tenant'", recall=recall)
        if budget is not None:
            budget = _checked_budget(budget)
        return Session(self, Scope(tenant=tenant, session=session), budget=budget, recall=recall)

    async def forget_tenant(self, tenant: str) -> int:
        """Forget a tenant: all its sessions, segments and plans; return how many segments.

        Once it returns, no timeline, search or reply reads them and ``plans.jsonl`` holds
        none of the tenant's plans. An unknown tenant forgets nothing and returns 0.
        """
        self._check_open()
        check_tenant(tenant)
        try:
            count = await self.store.forget_tenant(tenant)
        except ScopeError:  # unknown: nothing stored, but a forget cut short may have left plans
            count = 0
        await self._forget_plans(tenant=tenant)
        return count

    async def _forget_plans(
        self,
        *,
        tenant: str | None = None,
        scope: Scope | None = None,
        segment_ids: Iterable[str] = (),
    ) -> None:
        if self.plan_log is not None:
            forget = self.plan_log.forget
            ids = list(segment_ids)
            await asyncio.to_thread(forget, tenant=tenant, scope=scope, segment_ids=ids)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidInput("the agent is closed", fix="open a new one with Agent.open()")

    async def aclose(self) -> None:
        """Close the engine (after its call in progress) and memory the agent opened."""
        if self._closed:
            return
        self._closed = True
        if self._owns_engine:
            await self._engine.aclose()
        if self._owns_store:
            await self.store.aclose()


class Session:
    """One conversation's timeline, and the calls that write to it and answer from it."""

    def __init__(
        self, agent: Agent, scope: Scope, *, budget: Budget | None, recall: Recall
    ) -> None:
        self.agent = agent
        self.scope = scope
        self.budget = budget
        self.recall = recall
        self._registered = False

    # -- writes -------------------------------------------------------------------------

    async def add_system(self, text: str, **options: Any) -> Segment:
        """The system prompt; it always goes in as tokens."""
        return await self._write(SegmentKind.SYSTEM, text, **options)

    async def add_turn(
        self, role: Literal["user", "assistant"], text: str, **options: Any
    ) -> Segment:
        """A user or assistant turn."""
        if role not in ("user", "assistant"):
            raise InvalidInput("role must be 'user' or 'assistant'", role=role)
        return await self._write(SegmentKind(role), text, **options)

    async def add_tool_output(
        self, tool: str, output: str, *, call_id: str | None = None, **options: Any
    ) -> Segment:
        """A tool's output; stored compressed like everything else."""
        metadata = {"tool_name": tool, **({"tool_call_id": call_id} if call_id else {})}
        return await self._write(
            SegmentKind.TOOL_OUTPUT, output, source=tool, extra=metadata, **options
        )

    async def add_document(
        self,
        text: str,
        *,
        source: str | None = None,
        placement: str = "chronological",
        **options: Any,
    ) -> Segment:
        """A document; ``placement`` is "chronological", "start", "before_query" or
        "after:<segment id>"."""
        check_placement(placement)
        return await self._write(
            SegmentKind.DOCUMENT, text, source=source, extra={"placement": placement}, **options
        )

    async def _write(
        self,
        kind: SegmentKind,
        text: str,
        *,
        domain: str | None = None,
        source: str | None = None,
        metadata: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Segment:
        self.agent._check_open()
        if not isinstance(text, str) or not text or text.isspace():
            raise InvalidInput("text must be a non-empty string", kind=kind.value)
        check_length(text, max_chars=self.agent.store.settings.max_segment_chars)
        segment = Segment(
            scope=self.scope,
            kind=kind,
            text=text,
            domain=domain or "",
            source=source,
            metadata={**(metadata or {}), **(extra or {})},
        )
        chunks = await asyncio.to_thread(self.agent.model.chunk, text)
        result = await self._append(segment, chunks)
        return segment.model_copy(
            update={"seq": result.seq, "n_tokens": result.n_tokens, "n_chunks": result.n_chunks}
        )

    async def _append(
        self, segment: Segment, chunks: list[Chunk], embeddings: Any = None
    ) -> AppendResult:
        store = self.agent.store
        if not self._registered:
            await store.create_scope(self.scope)
            self._registered = True
        try:
            return await store.append(segment, chunks, embeddings=embeddings)
        except ScopeError:  # forgotten since (this session or its tenant): register it again
            await store.create_scope(self.scope)
            return await store.append(segment, chunks, embeddings=embeddings)

    async def timeline(self) -> list[Segment]:
        """Every segment of this session, in order; empty for a new session."""
        return await self.agent.store.timeline(self.scope)

    # -- memory calls (mem0 / LangGraph store style; refrag_agent.memory_calls) ---------

    async def get_all(self) -> list[Segment]:
        """Every segment of this session, in order: the same as :meth:`timeline`."""
        return await self.timeline()

    async def add_messages(self, messages: Messages) -> list[Segment]:
        """Append OpenAI-style chat messages; return the segments written, in order.

        ``system``/``developer`` messages become system segments, ``user``/``assistant``
        ones turns, an assistant's ``tool_calls`` ``tool_call`` segments and ``tool``
        messages their ``tool_output`` segments, paired by call id. The whole list is
        checked first: a bad message raises ``InvalidInput`` naming its index and field,
        and nothing is written.
        """
        self.agent._check_open()
        return await append_messages(self.agent.store, self.agent.model, self.scope, messages)

    async def search(
        self, query: str, *, limit: int = 10, all_sessions: bool = False
    ) -> list[MemoryHit]:
        """The segments that best match ``query`` (hybrid vector + full-text), best first.

        ``all_sessions`` searches every session of the tenant (never another tenant's).
        """
        self.agent._check_open()
        return await search_memory(
            self.agent.store, self.scope, query, limit=limit, all_sessions=all_sessions
        )

    async def delete(self, segment_ids: str | Iterable[str]) -> list[Segment]:
        """Delete segments of this session by id; return them.

        Timeline, search and replies no longer see them, and the plans that placed them
        are dropped from ``plans.jsonl``. An id that is not a segment of this session
        raises ``InvalidInput`` naming it, and nothing is deleted.
        """
        self.agent._check_open()
        deleted = await delete_segments(self.agent.store, self.scope, segment_ids)
        await self.agent._forget_plans(segment_ids=[s.id for s in deleted])
        return deleted

    async def forget(self) -> int:
        """Forget this session: all its segments and plans; return how many segments.

        Once it returns, no timeline, search or reply reads them, and ``plans.jsonl`` holds
        neither this session's plans nor other sessions' plans that recalled its segments.
        The session can be written to again afterwards, as a new one.
        """
        self.agent._check_open()
        forgotten = [s.id for s in await self.timeline()]
        try:
            count = await self.agent.store.forget_session(self.scope)
        except ScopeError:  # unknown: nothing stored, but a forget cut short may have left plans
            count = 0
        self._registered = False
        await self.agent._forget_plans(scope=self.scope, segment_ids=forgotten)
        return count

    # -- reads --------------------------------------------------------------------------

    async def respond(
        self,
        query: str,
        *,
        budget: Budget | None = None,
        tools: Toolbox | Iterable[ToolLike] | None = None,
        max_tool_steps: int = 4,
        max_new_tokens: int | None = None,
    ) -> Reply:
        """Answer ``query`` from memory; the query and the answer are appended as turns.

        With ``tools``, the model may call them (format: ``docs/tools.md``); every call and
        its output are appended as ``tool_call`` / ``tool_output`` segments, paired by
        call id, and the model answers again with them in memory, up to
        ``max_tool_steps`` calls.

        A call that fails before the decoder answers stores nothing: a budget that is not
        a :class:`Budget` (``BudgetError``), a ``max_new_tokens`` that leaves the prompt no
        room, a query that does not fit the decoder's window as tokens (``InvalidInput``),
        a plan that does not fit, an engine that cannot be reached.
        """
        reply: Reply | None = None
        async for event in self.stream(
            query,
            budget=budget,
            tools=tools,
            max_tool_steps=max_tool_steps,
            max_new_tokens=max_new_tokens,
        ):
            if isinstance(event, ReplyDone):
                reply = event.reply
        assert reply is not None
        return reply

    async def stream(
        self,
        query: str,
        *,
        budget: Budget | None = None,
        tools: Toolbox | Iterable[ToolLike] | None = None,
        max_tool_steps: int = 4,
        max_new_tokens: int | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Like :meth:`respond`, yielding events as they happen.

        Without tools, the answer streams token by token (:class:`TextDelta`). With tools,
        each call and output is yielded (:class:`ToolCallEvent`, :class:`ToolOutputEvent`)
        and the final answer arrives as one :class:`TextDelta`. The last event is always
        :class:`ReplyDone`.
        """
        agent = self.agent
        agent._check_open()
        params = agent.sampling
        if max_new_tokens is not None:
            if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
                raise InvalidInput("max_new_tokens must be an int", value=max_new_tokens)
            params = dataclasses.replace(params, max_new_tokens=max_new_tokens)
        if budget is not None:
            budget = _checked_budget(budget)
        else:
            budget = self.budget if self.budget is not None else agent.budget
        toolbox = Toolbox.coerce(tools)
        # Stop at any template token the model starts: without tools, a call marker too, so
        # an answer never holds (and memory never stores) an invented call.
        template = agent.model.template
        stops = template.stops(tool_calls=bool(len(toolbox)))
        params = dataclasses.replace(params, stop=tuple(dict.fromkeys((*params.stop, *stops))))
        preamble = tools_preamble(toolbox, template)
        turn = await self._query_turn(query, params.max_new_tokens, preamble)
        stored = False

        async def keep_query() -> None:
            # Once the decoder has answered, before the caller sees it (module docstring).
            nonlocal stored
            if not stored:
                await self._append(turn.segment, turn.chunks, turn.embeddings)
                stored = True

        if not len(toolbox):
            plan, record = await self._plan(turn, budget, params.max_new_tokens)
            final: Generation | None = None
            async for item in agent._engine.stream(plan, params):
                await keep_query()
                if isinstance(item, TokenEvent):
                    yield TextDelta(item.text)
                else:
                    final = item
            assert final is not None
            reply = await finish_reply(
                record,
                final,
                text=final.text,
                reason=final.finish_reason,
                plan_log=agent.plan_log,
            )
        else:
            last: list[tuple[ContextPlan, Generation]] = []
            # This call's own tool calls and outputs go in as tokens, as its query does:
            # a model that cannot read the output it asked for asks again.
            exchanged: set[str] = set()

            async def step() -> str:
                pinned = budget.model_copy(update={"pinned": budget.pinned | exchanged})
                plan, record = await self._plan(turn, pinned, params.max_new_tokens, preamble)
                generation = await agent._engine.generate(plan, params)
                await keep_query()
                last.append((record, generation))
                return generation.text

            result: ToolLoopResult | None = None
            loop = iter_tool_loop(step, toolbox, max_tool_steps=max_tool_steps, template=template)
            async with contextlib.aclosing(loop) as events:
                async for event in events:
                    if isinstance(event, ToolCallEvent):
                        written = await self._write(
                            SegmentKind.TOOL_CALL,
                            event.call.text,
                            source=event.call.name,
                            extra=pairing_metadata(event.call),
                        )
                        exchanged.add(written.id)
                        yield event
                    elif isinstance(event, ToolOutputEvent):
                        written = await self._write(
                            SegmentKind.TOOL_OUTPUT,
                            event.output.text,
                            source=event.call.name,
                            extra=pairing_metadata(event.call),
                        )
                        exchanged.add(written.id)
                        yield event
                    else:
                        result = event.result
            assert result is not None and last
            yield TextDelta(result.text)
            record, final = last[-1]
            reply = await finish_reply(
                record,
                final,
                text=result.text,
                reason=result.finish_reason,
                plan_log=agent.plan_log,
                exchanges=list(result.exchanges),
            )
        if reply.text.strip():
            await self.add_turn("assistant", reply.text)
        yield ReplyDone(reply)

    async def _query_turn(self, query: str, max_new_tokens: int, preamble: str) -> QueryTurn:
        """The query as a user turn, checked, chunked and embedded; nothing is written."""
        store, model = self.agent.store, self.agent.model
        if not isinstance(query, str) or not query or query.isspace():
            raise InvalidInput("query must be a non-empty string")
        settings = store.settings
        check_length(query, max_chars=settings.max_segment_chars)
        chunks = await asyncio.to_thread(model.chunk, query)
        segment = Segment(scope=self.scope, kind=SegmentKind.USER, text=query)
        check_segment(
            segment,
            chunks,
            max_chars=settings.max_segment_chars,
            max_chunks=settings.max_chunks_per_segment,
        )
        n_tokens = sum(len(c.token_ids) for c in chunks)
        segment = segment.model_copy(update={"n_tokens": n_tokens, "n_chunks": len(chunks)})
        self.agent.planner.check_query(segment, max_new_tokens=max_new_tokens, preamble=preamble)
        # One encoder call for the store's chunk embeddings and the policy's query vector
        # (when the store encodes with the model's encoder), shared with the concurrent
        # sessions' encodings (MemoryStore.embed). A one-chunk query is its own vector.
        texts = [c.text for c in chunks]
        shared = store.encoder is model.encoder
        whole = shared and texts != [query]
        vectors = await store.embed([*texts, query] if whole else texts)  # (n [+ 1], dim)
        vector = vectors[-1] if shared else None  # else the plan encodes it for the policy
        return QueryTurn(segment, chunks, vectors[: len(chunks)], vector)

    async def _plan(
        self, query: QueryTurn, budget: Budget, max_new_tokens: int, preamble: str = ""
    ) -> tuple[PlacementPlan, ContextPlan]:
        return await self.agent.planner.plan(
            self.scope,
            query,
            budget,
            max_new_tokens=max_new_tokens,
            recall_tenant=self.recall == "tenant",
            preamble=preamble,
        )


def _checked_budget(budget: object) -> Budget:
    if not isinstance(budget, Budget):
        raise BudgetError(
            "budget must be a Budget",
            type=type(budget).__name__,
            fix="pass Budget(tokens=256) or Budget(p=0.1)",
        )
    return budget
