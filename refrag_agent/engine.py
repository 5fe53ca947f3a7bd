"""Where the decoder runs. The in-process engine runs the model off the event loop.

Calls are served one at a time, in arrival order: on a CPU a second concurrent prefill
only competes for the same cores, and greedy answers stay identical to sequential runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from refrag_agent.errors import DecoderUnavailable, InvalidInput, ModelError
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel


class Engine(Protocol):
    """Where an agent's plans are decoded: :class:`LocalEngine` or a remote server."""

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation: ...

    def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]: ...

    async def aclose(self) -> None: ...


class LocalEngine:
    """A :class:`RefragModel` in this process, shared by every session of an agent."""

    def __init__(self, model: RefragModel) -> None:
        self.model = model
        self._lock = asyncio.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise DecoderUnavailable("the engine is closed", fix="open a new Agent")

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation:
        self._check_open()
        async with self._lock:
            results = await asyncio.to_thread(self.model.generate, [plan], params)
        return results[0]

    async def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]:
        self._check_open()
        async with self._lock:
            async for item in self.model.stream(plan, params):
                yield item

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True


async def open_engine(model: Any) -> tuple[RefragModel, Engine]:
    """The model an agent plans with and the engine that decodes its plans.

    An ``http(s)://`` URL (or a connected :class:`~refrag_agent.remote.RemoteEngine`)
    decodes on a ``refrag-agent serve`` server, with the API key from
    ``REFRAG_AGENT_API_KEY``; anything else is loaded here (:func:`resolve_model`).
    """
    from refrag_agent.remote import API_KEY_ENV, RemoteEngine

    if isinstance(model, str) and model.startswith(("http://", "https://")):
        model = await RemoteEngine.connect(model, api_key=os.environ.get(API_KEY_ENV))
    if isinstance(model, RemoteEngine):
        return model.model, model
    loaded = await asyncio.to_thread(resolve_model, model)
    return loaded, LocalEngine(loaded)


def resolve_model(model: Any) -> RefragModel:
    """``None`` (bundled default), a checkpoint directory or a loaded model."""
    if isinstance(model, RefragModel):
        return model
    if model is None:
        return default_model()
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        raise InvalidInput(
            "a server URL is opened with open_engine (Agent.open does it), not loaded",
            url=model,
        )
    if isinstance(model, (str, Path)):
        return RefragModel.load(model)
    raise InvalidInput(
        "model must be None, a checkpoint directory, a RefragModel or an http:// URL",
        got=type(model).__name__,
    )


BUNDLED_MODEL = Path(__file__).parent / "bundled" / "tiny"


def default_model() -> RefragModel:
    """The bundled tiny model (``refrag_agent/bundled/tiny``: its README says how it was made)."""
    if not (BUNDLED_MODEL / "refrag.json").is_file():
        raise ModelError(
            "the bundled model is missing from this installation",
            path=str(BUNDLED_MODEL),
            fix="reinstall refrag-agent, or pass model= a checkpoint directory",
        )
    return RefragModel.load(BUNDLED_MODEL)
