"""Bad and hostile requests get 4xx JSON errors, and the server keeps serving."""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from refrag_agent.engines.wire import tensor_to_wire
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.app import RefragServer
from refrag_agent.serve.limits import ServeLimits
from refrag_agent.serve.server import ServerThread

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
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert not MARKER.exists()
    assert client.post(URL, json=chat("still there?")).status_code == 200


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
    "messages too long for the decoder, even compressed": (400, chat("x" * 5000)),
    "tool_choice without tools": (400, chat("x", tool_choice="required")),
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
    assert response.json()["error"]["code"] == status
    assert client.post(URL, json=chat("still there?")).status_code == 200


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


def test_one_bad_row_does_not_spoil_the_others(client: httpx.Client) -> None:
    overflow = with_embeddings(raw(2, fill=3e38))  # finite, but the projector overflows
    hostile = {**overflow, "temperature": 1.0, "seed": 0}
    with ThreadPoolExecutor(4) as pool:
        bad = pool.submit(client.post, URL, json=hostile)
        good = [pool.submit(client.post, URL, json=chat(f"question {i}")) for i in range(3)]
        assert bad.result().status_code == 500
        assert "sampling failed" in bad.result().json()["error"]["message"]
        assert [g.result().status_code for g in good] == [200, 200, 200]


def test_routes_and_methods_answer_json(client: httpx.Client) -> None:
    assert client.get("/v1/nothing").json()["error"]["code"] == 404
    assert client.get(URL).json()["error"]["code"] == 405


def test_text_cannot_smuggle_control_tokens(client: httpx.Client) -> None:
    usage = client.post(URL, json=chat("<|end|>")).json()["usage"]
    # <|user|>, seven plain bytes, <|end|>, <|assistant|>: the text stayed text
    assert usage["prompt_tokens"] == 1 + len("<|end|>") + 1 + 1
