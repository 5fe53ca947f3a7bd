"""RemoteEngine: an agent decoding on a server plans and answers as in-process."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from refrag_agent import Budget, DecoderUnavailable, InvalidInput
from refrag_agent.agent import Agent, Session
from refrag_agent.engines import API_KEY_ENV, RemoteEngine
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.reply import ReplyDone, TextDelta
from refrag_agent.serve.server import ServerThread

from .conftest import MakeServer
from .util import FACTS

QUESTION = "What is my locker code?"


async def fill(chat: Session) -> None:
    await chat.add_system("You are a support agent.")
    await chat.add_document(FACTS * 3, source="notes.md", domain="notes")
    await chat.add_turn("user", "Please remember the room too.")


async def test_agent_over_http_answers_as_in_process(
    make_server: MakeServer,
    serve_model: RefragModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sekret")
    budget = Budget(p=0.25)
    with ServerThread(make_server(api_key="sekret")) as running:
        async with (
            Agent.open(model=running.url, memory=tmp_path / "remote") as remote,
            Agent.open(model=serve_model, memory=tmp_path / "local") as local,
        ):
            assert next(remote.model.decoder.parameters()).is_meta  # it cannot decode here
            assert remote.model.shape == local.model.shape
            replies = []
            for agent in (remote, local):
                chat = agent.session(tenant="acme", session="a")
                await fill(chat)
                replies.append(await chat.respond(QUESTION, budget=budget, max_new_tokens=12))
            there, here = replies
            assert there.text == here.text
            assert there.usage.completion_tokens == here.usage.completion_tokens
            assert there.finish_reason == here.finish_reason
            for plan in (there.plan, here.plan):
                assert plan.positions_fed < plan.tokens_held and plan.chunks_expanded > 0
            assert there.plan.positions_fed == here.plan.positions_fed
            assert [c.expanded for c in there.plan.chunks] == [c.expanded for c in here.plan.chunks]

            events = [
                e
                async for e in remote.session(tenant="acme", session="a").stream(
                    "And the room?", max_new_tokens=8
                )
            ]
            done = events[-1]
            assert isinstance(done, ReplyDone)
            streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
            assert streamed == done.reply.text and done.reply.usage.completion_tokens > 0


class Flaky(httpx.AsyncBaseTransport):
    """Refuses the first ``failures`` connections, then passes requests on."""

    def __init__(self, inner: httpx.AsyncBaseTransport, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.failures:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_connection_errors_are_retried(
    make_server: MakeServer, serve_model: RefragModel, minilm: ChunkEncoder
) -> None:
    transport = Flaky(httpx.ASGITransport(app=make_server().app), failures=2)
    engine = await RemoteEngine.connect(
        "http://serve.test", transport=transport, encoder=minilm, retries=2, backoff_s=0.01
    )
    assert transport.calls == 3
    plan = serve_model.plan(["<|user|>hello<|end|><|assistant|>"])
    params = SamplingParams(max_new_tokens=5)
    transport.failures = transport.calls + 1  # the next connection fails once more
    remote = await engine.generate(plan, params)
    assert remote.token_ids == serve_model.generate([plan], params)[0].token_ids
    await engine.aclose()
    with pytest.raises(DecoderUnavailable):
        await engine.generate(plan, params)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_server_down_is_decoder_unavailable(
    make_server: MakeServer, serve_model: RefragModel, minilm: ChunkEncoder
) -> None:
    with pytest.raises(DecoderUnavailable) as raised:
        await RemoteEngine.connect(
            f"http://127.0.0.1:{free_port()}", encoder=minilm, retries=2, backoff_s=0.01
        )
    assert raised.value.context["attempts"] == 3
    with ServerThread(make_server()) as running:
        engine = await RemoteEngine.connect(running.url, encoder=minilm, backoff_s=0.01)
    plan = serve_model.plan(["<|user|>hello<|end|><|assistant|>"])
    with pytest.raises(DecoderUnavailable):  # the server has stopped since
        await engine.generate(plan, SamplingParams(max_new_tokens=2))
    await engine.aclose()


async def test_wrong_key_is_invalid_input(make_server: MakeServer, minilm: ChunkEncoder) -> None:
    with (
        ServerThread(make_server(api_key="sekret")) as running,
        pytest.raises(InvalidInput, match="API key"),
    ):
        await RemoteEngine.connect(running.url, api_key="wrong", encoder=minilm)
