"""The vLLM adapter's requests, checked against vLLM's documented prompt-embeddings format.

Not run against a live vLLM: a mock server reads each request the way vLLM's docs say
it does (base64 of ``torch.save``, loaded with ``weights_only=True``) and answers in the
OpenAI Completions streaming format.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import torch

from refrag_agent.engines.vllm import VLLMEngine, completion_request, prompt_embeds
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel

from .util import FACTS


def load_prompt_embeds(data: str) -> torch.Tensor:
    """What vLLM does with the field."""
    return torch.load(io.BytesIO(base64.b64decode(data)), weights_only=True, map_location="cpu")


def plan_of(model: RefragModel) -> Any:
    chunks = model.chunk(FACTS)
    vectors = model.encode(chunks)
    return model.plan(["<|user|>", (chunks, vectors, {0}), "Which room?<|end|><|assistant|>"])


def test_request_matches_the_documented_format(serve_model: RefragModel) -> None:
    plan = plan_of(serve_model)
    params = SamplingParams(max_new_tokens=7, temperature=0.5, top_k=20, stop=("\n",), seed=1)
    body = completion_request(serve_model, plan, params, served_model="llama-tiny")
    assert "prompt" not in body  # the embeddings are the whole prompt: no template is applied
    tensor = load_prompt_embeds(body["prompt_embeds"])
    assert tensor.shape == (plan.n_positions, serve_model.shape.hidden_size)
    assert tensor.dtype in (torch.float32, torch.bfloat16, torch.float16)
    assert torch.equal(tensor, prompt_embeds(serve_model, plan))
    # the compressed chunks went through the projector, the text through the embedding table
    table = serve_model.decoder.get_input_embeddings().weight
    first = plan.placements[0].token_ids[0]
    assert torch.equal(tensor[0], table[first])
    assert body["model"] == "llama-tiny" and body["max_tokens"] == 7
    assert (body["temperature"], body["top_k"], body["stop"], body["seed"]) == (0.5, 20, ["\n"], 1)
    half = completion_request(serve_model, plan, params, served_model="m", dtype=torch.bfloat16)
    assert load_prompt_embeds(half["prompt_embeds"]).dtype == torch.bfloat16


async def test_engine_streams_a_completion(serve_model: RefragModel) -> None:
    plan = plan_of(serve_model)
    seen: list[dict[str, Any]] = []

    def vllm(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        assert request.url.path == "/v1/completions"
        assert load_prompt_embeds(body["prompt_embeds"]).shape[0] == plan.n_positions
        events = [
            {"choices": [{"index": 0, "text": "Room ", "finish_reason": None}]},
            {"choices": [{"index": 0, "text": "12B", "finish_reason": "length"}]},
            {"choices": [], "usage": {"prompt_tokens": plan.n_positions, "completion_tokens": 2}},
        ]
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    engine = VLLMEngine(
        serve_model,
        "http://vllm.test/v1",
        served_model="llama-tiny",
        transport=httpx.MockTransport(vllm),
    )
    result = await engine.generate(plan, SamplingParams(max_new_tokens=2))
    await engine.aclose()
    assert seen[0]["stream"] is True
    assert result.text == "Room 12B" and result.finish_reason == "length"
    assert result.token_ids == serve_model.tokenizer.encode("Room 12B")
    assert result.prompt_positions == plan.n_positions
