"""Decoding REFRAG plans on a vLLM server, through its prompt-embeddings input.

vLLM takes precomputed input embeddings on its OpenAI-compatible Completions API when
started with ``vllm serve <decoder> --enable-prompt-embeds``: the request's
``prompt_embeds`` field holds base64 of ``torch.save`` of one ``(seq_len, hidden_size)``
float32/bfloat16/float16 tensor, and no chat template is applied. Use vLLM 0.11.1 or
later (the first release with the fix for CVE-2025-62164, a memory corruption through
that very field). vLLM must serve the same decoder weights as this model.

The whole prompt is therefore embedded here, by the in-process assembly
(:func:`~refrag_agent.model.assembly.assemble`, a batch of one, so no padding):
template and text tokens through the decoder's embedding table, compressed chunks
through the projector. vLLM then prefills and decodes as for any prompt; it returns text,
not token ids, so a :class:`Generation`'s ids are the answer re-encoded here.

This adapter is tested on the requests it produces against vLLM's documented format;
it has not been run against a live vLLM server.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import torch

from refrag_agent.errors import DecoderUnavailable, InvalidInput, ModelError
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel

VLLM_MIN_VERSION = "0.11.1"
VLLM_FLAG = "--enable-prompt-embeds"


def prompt_embeds(model: RefragModel, plan: PlacementPlan) -> torch.Tensor:
    """The decoder-side input embeddings of ``plan``: ``(n_positions, hidden_size)``."""
    with torch.inference_mode():
        return model.assemble([plan]).inputs_embeds[0]  # (T, d): one row, nothing padded


def encode_tensor(tensor: torch.Tensor) -> str:
    """base64 of ``torch.save(tensor)``: the ``prompt_embeds`` format vLLM documents."""
    buffer = io.BytesIO()
    torch.save(tensor.detach().cpu().contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def completion_request(
    model: RefragModel,
    plan: PlacementPlan,
    params: SamplingParams,
    *,
    served_model: str,
    dtype: torch.dtype | None = None,
    stream: bool = False,
) -> dict[str, Any]:
    """The ``POST /v1/completions`` body for ``plan`` (``dtype``: default the decoder's)."""
    embeds = prompt_embeds(model, plan).to(dtype or next(model.decoder.parameters()).dtype)
    body: dict[str, Any] = {
        "model": served_model,
        "prompt_embeds": encode_tensor(embeds),
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stream": stream,
    }
    if params.top_k:
        body["top_k"] = params.top_k
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


class VLLMEngine:
    """``generate`` / ``stream`` / ``aclose`` over a vLLM server (see the module doc).

    ``model`` is this side's REFRAG model (tokenizer, projector, the decoder's embedding
    table); ``served_model`` the name vLLM serves the same decoder under.
    """

    def __init__(
        self,
        model: RefragModel,
        url: str,
        *,
        served_model: str,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.url = url.rstrip("/").removesuffix("/v1")
        self.served_model = served_model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            transport=transport,
        )
        self._closed = False

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation:
        """The whole answer (collected from the stream)."""
        final: Generation | None = None
        async for item in self.stream(plan, params):
            if isinstance(item, Generation):
                final = item
        assert final is not None
        return final

    async def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]:
        """Text pieces as vLLM streams them, then the :class:`Generation`."""
        if self._closed:
            raise DecoderUnavailable("the engine is closed", fix="open a new VLLMEngine")
        self.model.check_fits([plan], params.max_new_tokens)
        started = time.perf_counter()
        body = completion_request(
            self.model, plan, params, served_model=self.served_model, stream=True
        )
        result = Generation(prompt_positions=plan.n_positions)
        pieces: list[str] = []
        last = started
        try:
            async with self._client.stream("POST", "/v1/completions", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _refused(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    for choice in json.loads(line[len("data: ") :]).get("choices") or ():
                        now = time.perf_counter()
                        if choice.get("text"):
                            if not pieces:
                                result.ttft_s = now - started
                            else:
                                result.token_times_s.append(now - last)
                            last = now
                            pieces.append(choice["text"])
                            yield TokenEvent(0, -1, choice["text"], now - started)
                        if choice.get("finish_reason"):
                            result.finish_reason = (
                                "length" if choice["finish_reason"] == "length" else "stop"
                            )
        except httpx.TransportError as e:
            raise DecoderUnavailable("cannot reach the vLLM server", url=self.url) from e
        result.text = "".join(pieces)
        result.token_ids = self.model.tokenizer.encode(result.text)
        yield result

    async def aclose(self) -> None:
        """Close the connection pool; later calls raise :class:`DecoderUnavailable`."""
        self._closed = True
        await self._client.aclose()


def _refused(response: httpx.Response) -> Exception:
    try:
        detail = response.json()
    except ValueError:
        detail = response.text[:200]
    if response.status_code in (429, 503):
        return DecoderUnavailable("vLLM is busy or down", url=str(response.url), detail=detail)
    if response.status_code < 500:
        return InvalidInput(
            f"vLLM refused the request (is it started with {VLLM_FLAG}?)",
            status=response.status_code,
            detail=detail,
        )
    return ModelError("vLLM failed", status=response.status_code, detail=detail)
