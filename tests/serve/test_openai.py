"""The official ``openai`` client talks to the server over a real socket."""

from __future__ import annotations

import openai
import pytest

from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.server import ServerThread

from .conftest import MakeServer
from .util import FACTS, NAME, chunks_part

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is my locker code?"},
]


def test_streamed_and_not(make_server: MakeServer) -> None:
    with ServerThread(make_server(api_key="sekret")) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="sekret", max_retries=0)
        assert [m.id for m in client.models.list()] == [NAME]

        whole = client.chat.completions.create(
            model=NAME, messages=MESSAGES, max_tokens=12, temperature=0
        )
        text = whole.choices[0].message.content
        assert text and whole.choices[0].finish_reason in ("stop", "length")
        usage = whole.usage
        assert usage is not None and usage.completion_tokens == 12
        extra = usage.model_extra or {}
        assert extra["positions_fed"] == usage.prompt_tokens == extra["tokens_held"]
        assert extra["chunks_expanded"] == extra["chunks_compressed"] == 0

        stream = client.chat.completions.create(
            model=NAME,
            messages=MESSAGES,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, last_usage = [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                last_usage = chunk.usage
        assert "".join(pieces) == text  # greedy: the same answer, token for token
        assert last_usage is not None and last_usage.completion_tokens == 12


def test_compressed_content_and_budget(make_server: MakeServer, serve_model: RefragModel) -> None:
    with ServerThread(make_server()) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0)
        content = [chunks_part(serve_model), {"type": "text", "text": "Which room?"}]
        reply = client.chat.completions.create(
            model=NAME,
            messages=[{"role": "user", "content": content}],  # type: ignore[misc,list-item]
            max_tokens=4,
            temperature=0,
            extra_body={"refrag": {"budget": {"tokens": 32}, "policy": "similarity"}},
        )
        extra = reply.usage.model_extra if reply.usage else {}
        assert extra is not None and extra["chunks_expanded"] == 2  # two chunks of 16 tokens
        assert extra["chunks_compressed"] == len(serve_model.chunk(FACTS)) - 2
        assert extra["tokens_held"] > extra["positions_fed"]


def test_wrong_key_is_refused(make_server: MakeServer) -> None:
    with ServerThread(make_server(api_key="sekret")) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
