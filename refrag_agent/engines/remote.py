"""RemoteEngine: the agent's placement plans decoded by a ``refrag-agent serve`` server.

::

    async with Agent.open(model="http://127.0.0.1:8000", memory="./mem") as agent:
        ...  # chunking, encoding, layout and the policy run here; decoding on the server

On connect the engine reads ``GET /v1/refrag/model`` and builds the client-side model:
the server's tokenizer and policy, the local encoder (checked against the server's
fingerprint) and weightless stand-ins for the decoder and projector
(:mod:`refrag_agent.engines.metadata`). Every call sends the finished plan in the
``refrag.plan`` request field, so the server decodes exactly what the in-process engine
would. Connection errors and 429/503 answers are retried with exponential backoff; after
the last try the call raises :class:`~refrag_agent.errors.DecoderUnavailable`.
``Agent.open`` takes the API key from ``REFRAG_AGENT_API_KEY``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, get_args

import httpx

from refrag_agent.engines.metadata import model_from_metadata
from refrag_agent.engines.wire import plan_to_wire
from refrag_agent.errors import DecoderUnavailable, InvalidInput, ModelError, RefragError
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import FinishReason, Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel

API_KEY_ENV = "REFRAG_AGENT_API_KEY"
_RETRY_STATUS = (429, 503)


class RemoteEngine:
    """The same ``generate`` / ``stream`` / ``aclose`` as the in-process engine, over HTTP.

    Open one with :meth:`connect`; ``engine.model`` is the client-side model to plan with.
    """

    def __init__(
        self,
        url: str,
        *,
        model: RefragModel,
        name: str,
        client: httpx.AsyncClient,
        retries: int,
        backoff_s: float,
    ) -> None:
        self.url = url
        self.model = model
        self.name = name
        self.retries = retries
        self.backoff_s = backoff_s
        self._client = client
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        encoder: ChunkEncoder | None = None,
        retries: int = 3,
        backoff_s: float = 0.25,
        timeout_s: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> RemoteEngine:
        """Reach the server at ``url`` and build the client-side model from its description.

        ``encoder``: an already loaded encoder to use (it must match the server's);
        ``timeout_s``: the longest one call may take, generation included; ``transport``:
        an httpx transport (``httpx.ASGITransport(server.app)`` serves in-process).
        """
        if retries < 0 or backoff_s < 0:
            raise InvalidInput("retries and backoff_s must be >= 0", retries=retries)
        base = url.rstrip("/").removesuffix("/v1")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx.AsyncClient(
            base_url=base,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            transport=transport,
        )
        try:
            response = await _send(
                client, "GET", "/v1/refrag/model", retries=retries, backoff_s=backoff_s, url=base
            )
            meta = _json(response)
            model = await asyncio.to_thread(model_from_metadata, meta, encoder=encoder)
        except BaseException:
            await client.aclose()
            raise
        name = str(meta.get("name", ""))
        return cls(
            base, model=model, name=name, client=client, retries=retries, backoff_s=backoff_s
        )

    def _check_open(self) -> None:
        if self._closed:
            raise DecoderUnavailable("the engine is closed", fix="open a new Agent")

    def _body(self, plan: PlacementPlan, params: SamplingParams, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.name,
            "messages": [],
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "stop": list(params.stop),
            "seed": params.seed,
            "stream": stream,
            "refrag": {"plan": plan_to_wire(plan)},
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation:
        """Decode ``plan`` on the server and return the whole answer."""
        self._check_open()
        response = await self._send(
            "POST", "/v1/chat/completions", self._body(plan, params, stream=False)
        )
        data = _json(response)
        try:
            text = str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError) as e:
            raise ModelError("the server's answer has no message", url=self.url) from e
        return _generation(data.get("refrag"), text=text)

    async def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]:
        """Token events as the server sends them, then the :class:`Generation`.

        Leaving the loop early closes the connection; the server then stops decoding.
        """
        self._check_open()
        body = self._body(plan, params, stream=True)
        response = await self._send("POST", "/v1/chat/completions", body, stream=True)
        pieces: list[str] = []
        final: Generation | None = None
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[len("data: ") :])
                if "error" in event:
                    raise _error(response.status_code, event, url=self.url)
                for choice in event.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        pieces.append(text)
                        extra = event.get("refrag") or {}
                        yield TokenEvent(
                            row=0,
                            token_id=int(extra.get("token_id", -1)),
                            text=text,
                            elapsed_s=float(extra.get("elapsed_s", 0.0)),
                        )
                if event.get("usage") is not None:
                    final = _generation(event.get("refrag"), text="".join(pieces))
        except httpx.TransportError as e:
            raise DecoderUnavailable("the connection broke mid-answer", url=self.url) from e
        except ValueError as e:  # JSONDecodeError, or a field of the wrong type
            raise ModelError("the server sent a malformed event", url=self.url) from e
        finally:
            await response.aclose()
        if final is None:
            raise DecoderUnavailable("the server's stream ended before the answer", url=self.url)
        yield final

    async def aclose(self) -> None:
        """Close the connection pool; later calls raise :class:`DecoderUnavailable`."""
        self._closed = True
        await self._client.aclose()

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, stream: bool = False
    ) -> httpx.Response:
        return await _send(
            self._client,
            method,
            path,
            body,
            stream=stream,
            retries=self.retries,
            backoff_s=self.backoff_s,
            url=self.url,
        )


async def _send(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    stream: bool = False,
    retries: int,
    backoff_s: float,
    url: str,
) -> httpx.Response:
    """One request, retried with backoff on connection errors and on 429/503 answers."""
    failure: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        request = client.build_request(method, path, json=body)
        try:
            response = await client.send(request, stream=stream)
        except httpx.TransportError as e:
            failure = e
            continue
        if response.status_code < 400:
            return response
        await response.aread()
        await response.aclose()
        failure = _error(response.status_code, _payload(response), url=url)
        if response.status_code not in _RETRY_STATUS:
            raise failure
    if isinstance(failure, RefragError):
        raise failure
    raise DecoderUnavailable(
        "cannot reach the decoder server",
        url=url,
        attempts=retries + 1,
        fix="start it with: refrag-agent serve --model DIR --port N",
    ) from failure


def _payload(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _json(response: httpx.Response) -> dict[str, Any]:
    data = _payload(response)
    if not data:
        raise ModelError("the server answered with something that is not a JSON object")
    return data


def _error(status: int, payload: dict[str, Any], *, url: str) -> RefragError:
    """A server's JSON error as the library error of the same meaning."""
    error = payload.get("error")
    if not isinstance(error, dict):
        error = {}
    message = f"the server refused the call: {error.get('message', 'no details')}"
    code = error.get("code", status)
    if code in (429, 503, 504):
        return DecoderUnavailable(message, url=url, status=code)
    if isinstance(code, int) and 400 <= code < 500:
        return InvalidInput(message, url=url, status=code)
    return ModelError(message, url=url, status=code)


def _generation(data: Any, *, text: str) -> Generation:
    """The server's ``refrag`` answer field as a :class:`Generation`."""
    try:
        reason = data["finish_reason"]
        if reason not in get_args(FinishReason):
            raise ValueError(reason)
        return Generation(
            token_ids=[int(t) for t in data["token_ids"]],
            text=text,
            finish_reason=reason,
            ttft_s=float(data["ttft_s"]),
            token_times_s=[float(t) for t in data["token_times_s"]],
            prompt_positions=int(data["prompt_positions"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError("the server's answer lacks the refrag generation record") from e
