"""Slots: a full server answers 429, a client that leaves frees its slot, time is limited."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from refrag_agent.serve.app import RefragServer
from refrag_agent.serve.server import ServerThread

from .conftest import MakeServer
from .util import URL, chat

LONG = 4000  # tokens: many seconds of decoding, far longer than the tests wait


def wait_for(
    server: RefragServer, done: Callable[[dict[str, int]], bool], timeout_s: float = 10
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done(server.scheduler.snapshot()):
        if time.monotonic() > deadline:
            pytest.fail(f"server state never reached: {server.scheduler.snapshot()}")
        time.sleep(0.02)


def test_client_leaving_mid_stream_frees_its_slot(make_server: MakeServer) -> None:
    server = make_server(max_batch=1, max_queue=0, max_tokens=LONG)
    long = chat("tell me everything", max_tokens=LONG, ignore_eos=True, stream=True)
    with ServerThread(server) as running, httpx.Client(base_url=running.url, timeout=30) as client:
        with client.stream("POST", URL, json=long) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")  # the answer has started
            busy = client.post(URL, json=chat("me too"))
            assert busy.status_code == 429
            assert busy.json()["error"]["type"] == "server_busy"
            assert busy.headers["retry-after"] == "1"
        # the stream is closed half way: the server must stop decoding it
        wait_for(server, lambda s: s["cancelled"] == 1 and s["decoding"] == 0)
        assert client.post(URL, json=chat("me too")).status_code == 200
    assert server.scheduler.snapshot()["served"] == 1


def test_client_leaving_a_whole_answer_call_frees_its_slot(make_server: MakeServer) -> None:
    server = make_server(max_batch=1, max_queue=0, max_tokens=LONG)
    long = chat("tell me everything", max_tokens=LONG, ignore_eos=True)
    with ServerThread(server) as running:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(running.url + URL, json=long, timeout=0.5)
        wait_for(server, lambda s: s["cancelled"] == 1 and s["decoding"] == 0)
        assert httpx.post(running.url + URL, json=chat("next")).status_code == 200


def test_time_limit(make_server: MakeServer) -> None:
    server = make_server(max_tokens=LONG, max_request_s=0.3)
    with ServerThread(server) as running:
        whole = httpx.post(running.url + URL, json=chat("x", max_tokens=LONG, ignore_eos=True))
        assert whole.status_code == 504
        assert whole.json()["error"]["type"] == "timeout"
        streamed = httpx.post(
            running.url + URL, json=chat("x", max_tokens=LONG, ignore_eos=True, stream=True)
        )
        assert streamed.status_code == 200  # the status was sent before time ran out
        assert '"type": "timeout"' in streamed.text and streamed.text.endswith("data: [DONE]\n\n")
        assert httpx.post(running.url + URL, json=chat("x")).status_code == 200
    assert server.scheduler.snapshot()["failed"] == 2
