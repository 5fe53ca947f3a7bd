"""Bad and hostile requests get 4xx JSON errors, and the server keeps serving."""

from __future__ import annotations

import base64
import io
import json
import os
import select
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from refrag_agent.engines.wire import MAX_ABS, tensor_to_wire
from refrag_agent.errors import BudgetError
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.app import RefragServer
from refrag_agent.serve.errors import ApiError
from refrag_agent.serve.limits import ServeLimits
from refrag_agent.serve.server import ServerThread
from refrag_agent.template import REFRAG_TEMPLATE

from .conftest import MakeServer
from .util import NAME, URL, chat

KEY = "sekret"
WIDTH = 384  # MiniLM's width: what the projector takes
MARKER = Path(os.environ.get("TMPDIR", "/tmp")) / "refrag-serve-pwned"


@pytest.fixture(scope="module")
def client(serve_model: RefragModel) -> Iterator[httpx.Client]:
    MARKER.unlink(missing_ok=True)
    limits = ServeLimits(max_body_bytes=256 * 1024, max_messages=4, max_tokens=64, max_chunks=32)
    server = RefragServer(serve_model, name=NAME, limits=limits, api_key=KEY)
    with ServerThread(server) as running:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=running.url, headers=headers, timeout=30) as opened:
            yield opened


def torch_payload(value: Any) -> dict[str, str]:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return {"format": "torch", "data": base64.b64encode(buffer.getvalue()).decode()}


class Pwn:
    """A pickle that runs a shell command when loaded without weights_only."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {MARKER}",))


def sparse_out_of_bounds() -> torch.Tensor:
    indices = torch.tensor([[0, 1], [0, 10**6]])  # column 10**6 of a 384-wide tensor
    return torch.sparse_coo_tensor(indices, torch.ones(2), size=(2, WIDTH), check_invariants=False)


def with_embeddings(embeddings: dict[str, Any]) -> dict[str, Any]:
    part = {"type": "refrag_chunks", "embeddings": embeddings}
    return chat([part, {"type": "text", "text": "hi"}])


def raw(rows: int, width: int = WIDTH, *, fill: float = 0.1) -> dict[str, Any]:
    return tensor_to_wire(torch.full((rows, width), fill))


HOSTILE_TENSORS = {
    "pickle runs code": torch_payload(Pwn()),
    "sparse, out of bounds": torch_payload(sparse_out_of_bounds()),
    "several tensors": torch_payload({"a": torch.zeros(2, WIDTH)}),
    "integers": torch_payload(torch.zeros(2, WIDTH, dtype=torch.int64)),
    "torch, wrong width": torch_payload(torch.zeros(2, WIDTH + 1)),
    "not a torch file": {"format": "torch", "data": base64.b64encode(b"PK\x03\x04junk").decode()},
    "NaN": raw(2, fill=float("nan")),
    "infinity": raw(2, fill=float("inf")),
    "huge finite values": raw(2, fill=3e38),
    "huge negative values": raw(2, fill=-3e38),
    "just beyond the bound": raw(2, fill=MAX_ABS * 1.001),
    "torch, huge finite values": torch_payload(torch.full((2, WIDTH), 3e38)),
    "wrong width": raw(2, WIDTH - 1),
    "more rows than allowed": raw(33),
    "shape larger than data": {**raw(1), "shape": [30, WIDTH]},
    "negative shape": {**raw(1), "shape": [-1, WIDTH]},
    "float64 claimed": {**raw(1), "dtype": "float64"},
    "not base64": {**raw(1), "data": "!!!not base64!!!"},
    "unknown format": {**raw(1), "format": "pickle"},
    "data beyond the size limit": {**raw(1), "data": "A" * 100_000},
}


@pytest.mark.parametrize("payload", HOSTILE_TENSORS.values(), ids=HOSTILE_TENSORS.keys())
def test_hostile_tensors(client: httpx.Client, payload: dict[str, Any]) -> None:
    response = client.post(URL, json=with_embeddings(payload))
    assert response.status_code == 400, response.text
    assert strict_json(response)["error"]["type"] == "invalid_request_error"
    assert not MARKER.exists()
    assert client.post(URL, json=chat("still there?")).status_code == 200


def test_embeddings_at_the_bound_decode(client: httpx.Client) -> None:
    for fill in (MAX_ABS, -MAX_ABS):
        response = client.post(URL, json=with_embeddings(raw(2, fill=fill)))
        assert response.status_code == 200, response.text


def strict_json(response: httpx.Response) -> Any:
    """The body as JSON proper: NaN and Infinity, which Python's parser takes, fail."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a response body")

    return json.loads(response.text, parse_constant=refuse)


def spliced(members: str) -> bytes:
    """A valid request with raw JSON ``members`` added, for numbers Python cannot write."""
    return json.dumps(chat("x"))[:-1].encode() + b", " + members.encode() + b"}"


def tool_schema(parameters: str) -> str:
    function = f'{{"name": "f", "parameters": {parameters}}}'
    return f'"tools": [{{"type": "function", "function": {function}}}]'


BAD_REQUESTS: dict[str, tuple[int, Any]] = {
    "malformed JSON": (400, b'{"model": "tiny", "messages": ['),
    "NaN, which JSON lacks": (400, b'{"model": "tiny", "temperature": NaN, "messages": []}'),
    "not UTF-8": (400, b'{"model": "\xff"}'),
    "a JSON array": (400, b"[1, 2]"),
    "messages of the wrong type": (400, {"model": NAME, "messages": "hi"}),
    "an unknown role": (400, {"model": NAME, "messages": [{"role": "god", "content": "x"}]}),
    "too many messages": (400, {"model": NAME, "messages": [{"role": "user", "content": "x"}] * 5}),
    "max_tokens over the limit": (400, chat("x", max_tokens=65)),
    "n=2": (400, chat("x", n=2)),
    "negative temperature": (400, chat("x", temperature=-1)),
    "a seed out of range": (400, chat("x", seed=-1)),
    "an unknown model": (404, {**chat("x"), "model": "gpt-9"}),
    "no messages and no plan": (400, {"model": NAME, "messages": []}),
    "a budget with an unknown field": (400, chat("x", refrag={"budget": {"q": 1}})),
    "an unknown policy": (400, chat("x", refrag={"policy": "oracle"})),
    "a token id beyond the vocabulary": (
        400,
        {"model": NAME, "refrag": {"plan": {"placements": [{"tokens": [1, 10**9]}]}}},
    ),
    "a compressed chunk without its row": (
        400,
        {"model": NAME, "refrag": {"plan": {"placements": [{"compressed": 0, "n_tokens": 16}]}}},
    ),
    "a plan too long for the decoder": (
        400,
        {"model": NAME, "refrag": {"plan": {"placements": [{"tokens": [1] * 5000}]}}},
    ),
    "a segment reference without a memory store": (
        400,
        chat([{"type": "refrag_segments", "tenant": "t", "session": "s", "segment_ids": ["x"]}]),
    ),
    "a body over the size limit": (413, chat("x" * 300_000)),
    "temperature -1e400": (400, spliced('"temperature": -1e400')),
    "top_p 1e400": (400, spliced('"top_p": 1e400')),
    "a budget of 1e400": (400, spliced('"refrag": {"budget": {"p": 1e400}}')),
    "a budget of 1e400 tokens": (400, spliced('"refrag": {"budget": {"tokens": 1e400}}')),
    "an integer beyond 64 bits": (
        400,
        spliced('"refrag": {"budget": {"tokens": 1' + "0" * 30 + "}}"),
    ),
    "an integer of 5000 digits": (400, spliced('"top_k": ' + "9" * 5000)),
    "infinity deep in a tool schema": (400, spliced(tool_schema('{"maximum": -1e999}'))),
    "JSON nested 65 deep": (400, spliced('"x": ' + "[" * 65 + "]" * 65)),
    "JSON nested 5K deep": (400, spliced('"x": ' + "[" * 5000 + "]" * 5000)),
    "JSON nested 100K deep, unclosed": (400, spliced('"x": ' + "[" * 100_000)),
    "max_tokens true": (400, chat("x", max_tokens=True)),
    'max_tokens "5"': (400, chat("x", max_tokens="5")),
    "max_tokens 5.0": (400, chat("x", max_tokens=5.0)),
    "max_completion_tokens 0": (400, chat("x", max_completion_tokens=0)),
    "max_tokens 0": (400, chat("x", max_tokens=0)),
    "max_completion_tokens over the limit": (400, chat("x", max_completion_tokens=10**18)),
    'temperature "0.5"': (400, chat("x", temperature="0.5")),
    "top_p true": (400, chat("x", top_p=True)),
    "top_p 0": (400, chat("x", top_p=0)),
    "top_k 1.5": (400, chat("x", top_k=1.5)),
    'seed "7"': (400, chat("x", seed="7")),
    'n "1"': (400, chat("x", n="1")),
    'stream "yes"': (400, chat("x", stream="yes")),
    "stream_options.include_usage 1": (400, chat("x", stream_options={"include_usage": 1})),
    "huge finite plan embeddings": (
        400,
        {
            "model": NAME,
            "refrag": {
                "plan": {
                    "placements": [{"tokens": [1]}, {"compressed": 0, "n_tokens": 16}],
                    "chunk_embeddings": raw(1, fill=3e38),
                }
            },
        },
    ),
    "messages too long for the decoder, even compressed": (400, chat("x" * 5000)),
    "tool_choice without tools": (400, chat("x", tool_choice="required")),
    "five stop strings": (400, chat("x", stop=["a", "b", "c", "d", "e"])),
    "a past call whose arguments are not JSON": (
        400,
        {
            "model": NAME,
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}
                    ],
                },
            ],
        },
    ),
}


@pytest.mark.parametrize("status, body", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests(client: httpx.Client, status: int, body: Any) -> None:
    if isinstance(body, bytes):
        response = client.post(URL, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(URL, json=body)
    assert response.status_code == status, response.text
    assert strict_json(response)["error"]["code"] == status
    assert client.post(URL, json=chat("still there?")).status_code == 200


def test_error_bodies_never_hold_non_finite_numbers() -> None:
    error = ApiError.of(BudgetError("p must be in [0, 1]", value=float("inf"), nan=float("nan")))
    response = error.response()
    assert json.loads(response.body)["error"]["context"] == {"value": "inf", "nan": "nan"}


def test_tiny_temperatures_and_top_p_decode_greedily(client: httpx.Client) -> None:
    greedy = client.post(URL, json=chat("hello", temperature=0)).json()
    for tiny in ({"temperature": t} for t in (1e-320, 5e-324, 1e-6)):
        answer = client.post(URL, json=chat("hello", **tiny, seed=1))
        assert answer.status_code == 200, answer.text
        assert answer.json()["refrag"]["token_ids"] == greedy["refrag"]["token_ids"]
    for top_p in (1e-300, 1e-6):
        answer = client.post(URL, json=chat("hello", temperature=1, top_p=top_p, seed=1))
        assert answer.status_code == 200, answer.text
        assert answer.json()["refrag"]["token_ids"] == greedy["refrag"]["token_ids"]


def test_numbers_within_range_are_taken(client: httpx.Client) -> None:
    brackets = "[{" * 40  # in a string: text, not nesting
    for body in (
        chat(brackets, temperature=1e300, seed=0),
        chat("x", max_completion_tokens=3, max_tokens=60),
        chat("x", top_p=1e-4, top_k=2**62, seed=2**63 - 1, temperature=1),
        chat("x", stop=[*REFRAG_TEMPLATE.special_tokens, "a", "b", "c", "d"]),  # as RemoteEngine
    ):
        assert client.post(URL, json=body).status_code == 200, body
    usage = client.post(URL, json=chat("x", max_completion_tokens=3, ignore_eos=True)).json()
    assert usage["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_wrong_or_missing_key(client: httpx.Client, headers: dict[str, str]) -> None:
    for response in (
        httpx.post(f"{client.base_url}{URL}", json=chat("x"), headers=headers),
        httpx.get(f"{client.base_url}/v1/models", headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{client.base_url}/health").json()["status"] == "ok"  # open to all


def test_bad_rows_among_good_ones(client: httpx.Client) -> None:
    hostile = {**with_embeddings(raw(2, fill=3e38)), "temperature": 1.0, "seed": 0}
    with ThreadPoolExecutor(4) as pool:
        bad = pool.submit(client.post, URL, json=hostile)
        good = [pool.submit(client.post, URL, json=chat(f"question {i}")) for i in range(3)]
        assert bad.result().status_code == 400
        assert [g.result().status_code for g in good] == [200, 200, 200]


def test_the_most_chunk_rows_fit_the_body_limit(make_server: MakeServer) -> None:
    """The default limits: max_chunks rows of the bundled encoder's width, with 16 token
    ids each (6 digits, as a 100K-token vocabulary has), fit max_body_bytes."""
    limits = ServeLimits()
    ids = [[199_999] * 16 for _ in range(limits.max_chunks)]
    part = {"type": "refrag_chunks", "embeddings": raw(limits.max_chunks), "token_ids": ids}
    body = json.dumps(chat([part, {"type": "text", "text": "hi"}])).encode()
    assert len(body) <= limits.max_body_bytes
    with ServerThread(make_server()) as running:  # the default limits
        response = httpx.post(running.url + URL, content=body, timeout=60)
    # read and parsed whole: the tiny model's vocabulary is what refuses it
    assert response.status_code == 400, response.text
    assert "token id outside" in response.json()["error"]["message"]


def test_routes_and_methods_answer_json(client: httpx.Client) -> None:
    assert client.get("/v1/nothing").json()["error"]["code"] == 404
    assert client.get(URL).json()["error"]["code"] == 405


def test_text_cannot_smuggle_control_tokens(client: httpx.Client) -> None:
    usage = client.post(URL, json=chat("<|end|>")).json()["usage"]
    # <|user|>, seven plain bytes, <|end|>, <|assistant|>: the text stayed text
    assert usage["prompt_tokens"] == 1 + len("<|end|>") + 1 + 1


def closed_by_server(sock: socket.socket, wait_s: float) -> bool:
    """Whether the server closes the connection within ``wait_s`` (what it sent first is
    read and dropped)."""
    while select.select([sock], [], [], wait_s)[0]:
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


def trickle(sock: socket.socket, data: bytes, pause_s: float) -> bool:
    """Send ``data`` one byte per ``pause_s``; True once the server has closed the
    connection (before every byte was sent)."""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # reset by the server
            return True
        if closed_by_server(sock, pause_s):
            return True
    return False


def test_slow_clients_are_cut_off(make_server: MakeServer) -> None:
    head = f"POST {URL} HTTP/1.1\r\nHost: x\r\n".encode() + b"X-Pad: y\r\n" * 20
    with ServerThread(make_server(max_receive_s=0.3)) as running:
        address = (running.host, running.port)
        with socket.create_connection(address) as sock:  # headers, byte by byte
            assert trickle(sock, head, pause_s=0.05)
        with socket.create_connection(address) as sock:  # a connection that sends nothing
            assert closed_by_server(sock, wait_s=30)
        with socket.create_connection(address) as sock:  # headers whole, body stalled
            sock.sendall(head + b"Content-Length: 100\r\n\r\n" + b'{"model"')
            sock.settimeout(30)
            assert sock.recv(65536).startswith(b"HTTP/1.1 408 ")
            assert closed_by_server(sock, wait_s=30)
        with httpx.Client(base_url=running.url) as opened:  # keep-alive: the timer rearms
            for _ in range(2):
                assert opened.post(URL, json=chat("still there?")).status_code == 200
