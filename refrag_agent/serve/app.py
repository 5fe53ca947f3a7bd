"""The OpenAI-compatible HTTP app: routes, API key, body and request limits, SSE.

Routes: ``POST /v1/chat/completions`` (streamed with server-sent events or not), ``GET
/v1/models``, ``GET /v1/refrag/model`` (what a client needs to plan, see
:mod:`refrag_agent.engines.metadata`) and ``GET /health`` (no key needed). Requests are
checked (key, body size and time, JSON depth and numbers, fields, limits, the key's
tenants) before any model work; the plan is built off the event loop and handed to the
:class:`~refrag_agent.engines.scheduler.Scheduler` (the in-process engine runs one too).
When a client goes away, its job is cancelled and its slot freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from refrag_agent.budget import Budget
from refrag_agent.engines.metadata import model_metadata
from refrag_agent.engines.scheduler import (
    BatchLimits,
    JobError,
    Scheduler,
    SchedulerBusy,
    Ticket,
)
from refrag_agent.errors import RefragError
from refrag_agent.logs import get_logger
from refrag_agent.memory import MemoryStore
from refrag_agent.memory.encoding import EncodingQueue
from refrag_agent.model.generation import Generation, TokenEvent
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.auth import ApiKey, api_keys, authenticate
from refrag_agent.serve.body import load_json, read_body
from refrag_agent.serve.errors import ApiError
from refrag_agent.serve.limits import ServeLimits
from refrag_agent.serve.requests import (
    ChatRequest,
    Encode,
    Prepared,
    build_plan,
    fetch_segments,
)

log = get_logger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
_JOB_STATUS = {"timeout": (504, "timeout"), "shutdown": (503, "unavailable")}


class RefragServer:
    """One model behind an OpenAI-compatible API; ``server.app`` is the ASGI app.

    ``api_key``: when set, every route but ``/health`` needs ``Authorization: Bearer
    <key>``. A string is one key that may read every tenant's memory;
    :class:`~refrag_agent.serve.auth.ApiKey` objects (or several keys) bind keys to
    tenants. ``memory``: a store that ``refrag_segments`` parts may refer to (the caller
    opens and closes it). ``budget``: the expansion budget of requests that name none
    (default: nothing expanded beyond the last turns). The decoding thread starts with
    the first request and stops when the app shuts down or :meth:`close` is called.
    """

    def __init__(
        self,
        model: RefragModel,
        *,
        name: str = "refrag",
        limits: ServeLimits | None = None,
        api_key: str | ApiKey | Iterable[str | ApiKey] | None = None,
        memory: MemoryStore | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.limits = limits or ServeLimits()
        self.api_keys = api_keys(api_key)
        self.memory = memory
        self.budget = budget or Budget()
        self.encoding = EncodingQueue(model.encoder)  # concurrent requests' texts, encoded together
        self.scheduler = Scheduler(
            model,
            BatchLimits(
                max_batch=self.limits.max_batch,
                max_queue=self.limits.max_queue,
                max_batch_positions=self.limits.max_batch_positions,
                max_request_s=self.limits.max_request_s,
            ),
        )
        self.created = int(time.time())
        self._metadata: bytes | None = None
        self.app = Starlette(
            routes=[
                Route("/health", _guarded(self.health), methods=["GET"]),
                Route("/v1/models", _guarded(self.models), methods=["GET"]),
                Route("/v1/refrag/model", _guarded(self.refrag_model), methods=["GET"]),
                Route("/v1/chat/completions", _guarded(self.chat), methods=["POST"]),
            ],
            exception_handlers={HTTPException: _http_error},
            lifespan=self._lifespan,
        )

    def close(self) -> None:
        """Stop the decoding thread; requests still in flight end with a 503."""
        self.scheduler.close()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(self.close)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.name, **self.scheduler.snapshot()})

    async def models(self, request: Request) -> Response:
        self._authorize(request)
        entry = {"id": self.name, "object": "model", "created": self.created, "owned_by": "refrag"}
        return JSONResponse({"object": "list", "data": [entry]})

    async def refrag_model(self, request: Request) -> Response:
        self._authorize(request)
        if self._metadata is None:
            meta = await asyncio.to_thread(model_metadata, self.model, name=self.name)
            meta["limits"] = self.limits.describe()
            self._metadata = json.dumps(meta).encode("utf-8")
        return Response(self._metadata, media_type="application/json")

    async def chat(self, request: Request) -> Response:
        started = time.perf_counter()
        key = self._authorize(request)
        limits = self.limits
        body = await read_body(request, limit=limits.max_body_bytes, timeout_s=limits.max_receive_s)
        chat = await asyncio.to_thread(_parse, body, max_depth=limits.max_json_depth)
        if chat.model != self.name:
            raise ApiError(
                404, f"model {chat.model!r} is not served here", kind="not_found", served=self.name
            )
        chat.check(self.limits)
        fetched = await fetch_segments(chat, self.memory, key=key)
        prepared = await asyncio.to_thread(
            build_plan,
            chat,
            self.model,
            fetched=fetched,
            limits=self.limits,
            budget=self.budget,
            encode=self._shared_encode(asyncio.get_running_loop()),
        )
        ticket = self.scheduler.submit(
            prepared.plan, prepared.params, started=started, ignore_eos=chat.ignore_eos
        )
        reply = _Reply(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), self.name, prepared)
        if chat.stream:
            usage = chat.stream_options is not None and chat.stream_options.include_usage
            return StreamingResponse(
                _events(ticket, reply, include_usage=usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        generation = await _answer_unless_gone(request, ticket)
        if generation is None:
            return Response(status_code=499)  # the client left; nobody reads this
        return JSONResponse(reply.completion(generation))

    def _shared_encode(self, loop: asyncio.AbstractEventLoop) -> Encode:
        """An ``encode`` for a request's planning thread: its texts join the queue of
        concurrent requests' texts, encoded in one encoder call (memory's EncodingQueue)."""

        def encode(texts: Sequence[str]) -> torch.Tensor:
            rows = asyncio.run_coroutine_threadsafe(self.encoding.encode(texts), loop)
            return torch.from_numpy(rows.result())

        return encode

    def _authorize(self, request: Request) -> ApiKey | None:
        """The request's key (None when the server needs none); 401 without a valid one."""
        return authenticate(self.api_keys, request.headers.get("authorization", ""))


@dataclass(frozen=True)
class _Reply:
    """The OpenAI-shaped objects of one answer."""

    id: str
    created: int
    model: str
    prepared: Prepared

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(
        self,
        delta: dict[str, Any],
        *,
        finish_reason: str | None = None,
        refrag: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        out = {**self._head("chat.completion.chunk"), "choices": [choice]}
        if refrag is not None:
            out["refrag"] = refrag
        return out

    def usage(self, g: Generation) -> dict[str, Any]:
        """OpenAI's token counts (prompt = positions fed) and REFRAG's plan figures."""
        plan = self.prepared.plan
        return {
            "prompt_tokens": plan.n_positions,
            "completion_tokens": len(g.token_ids),
            "total_tokens": plan.n_positions + len(g.token_ids),
            "tokens_held": plan.n_tokens_held,
            "positions_fed": plan.n_positions,
            "chunks_expanded": plan.n_expanded,
            "chunks_compressed": plan.n_compressed,
        }

    def usage_chunk(self, g: Generation) -> dict[str, Any]:
        head = self._head("chat.completion.chunk")
        return {**head, "choices": [], "usage": self.usage(g), "refrag": _generation(g)}

    def completion(self, g: Generation) -> dict[str, Any]:
        message, reason = self.prepared.answer(g)
        choice = {"index": 0, "message": message, "finish_reason": reason, "logprobs": None}
        return {
            **self._head("chat.completion"),
            "choices": [choice],
            "usage": self.usage(g),
            "refrag": _generation(g),
        }


def _generation(g: Generation) -> dict[str, Any]:
    """What a :class:`Generation` needs beyond OpenAI's fields (read by RemoteEngine)."""
    return {
        "finish_reason": g.finish_reason,
        "token_ids": g.token_ids,
        "ttft_s": g.ttft_s,
        "token_times_s": g.token_times_s,
        "prompt_positions": g.prompt_positions,
    }


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def _events(ticket: Ticket, reply: _Reply, *, include_usage: bool) -> AsyncIterator[str]:
    """The SSE body. If the client disconnects, Starlette cancels this generator and the
    ``finally`` cancels the job, which frees its slot at the next decoding step.

    Text streams token by token; with tools on offer the answer may be a call, so it is
    sent whole at the end: its text, then its call as one ``tool_calls`` delta."""
    buffered = reply.prepared.tools is not None
    try:
        yield _sse(reply.chunk({"role": "assistant", "content": ""}))
        async for event in ticket.events():
            if isinstance(event, TokenEvent):
                if not buffered:
                    refrag = {"token_id": event.token_id, "elapsed_s": event.elapsed_s}
                    yield _sse(reply.chunk({"content": event.text}, refrag=refrag))
                continue
            message, reason = reply.prepared.answer(event)
            if buffered and message["content"]:
                yield _sse(reply.chunk({"content": message["content"]}))
            for index, call in enumerate(message.get("tool_calls", ())):
                yield _sse(reply.chunk({"tool_calls": [{"index": index, **call}]}))
            yield _sse(reply.chunk({}, finish_reason=reason))
            if include_usage:
                yield _sse(reply.usage_chunk(event))
    except JobError as e:  # the status line is sent already: the error goes in the stream
        yield _sse(_api_error(e).body())
    finally:
        ticket.cancel()
    yield "data: [DONE]\n\n"


async def _answer_unless_gone(request: Request, ticket: Ticket) -> Generation | None:
    """The whole answer, or ``None`` (and the job cancelled) if the client disconnects."""
    answer = asyncio.ensure_future(ticket.result())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not answer.done():
            answer.cancel()
            ticket.cancel()
    if not answer.done() or answer.cancelled():
        return None
    return answer.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _parse(body: bytes, *, max_depth: int) -> ChatRequest:
    data = load_json(body, max_depth=max_depth)
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object", kind="invalid_request_error")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()[:5]
        )
        raise ApiError(400, f"invalid request: {problems}", kind="invalid_request_error") from e


def _api_error(error: Exception) -> ApiError:
    """The HTTP answer for an exception raised while handling a request."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, SchedulerBusy):
        return ApiError(
            429, error.message, kind="server_busy", headers={"Retry-After": "1"}, **error.context
        )
    if isinstance(error, JobError):
        status, kind = _JOB_STATUS.get(error.reason, (500, "server_error"))
        return ApiError(status, error.message, kind=kind)
    if isinstance(error, RefragError):
        return ApiError.of(error)
    log.exception("request failed", error=repr(error))
    return ApiError(500, "internal error; the server log has details", kind="server_error")


def _guarded(handler: Handler) -> Handler:
    """Every exception out of ``handler`` becomes a JSON error answer."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as e:
            return _api_error(e).response()

    return run


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route, wrong method) as JSON too."""
    assert isinstance(exc, HTTPException)
    kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
    return ApiError(exc.status_code, str(exc.detail), kind=kind).response()
