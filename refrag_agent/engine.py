"""Where the decoder runs. The in-process engine runs the model off the event loop.

Calls are served one at a time, in arrival order: on a CPU a second concurrent prefill
only competes for the same cores, and greedy answers stay identical to sequential runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog

from refrag_agent.errors import DecoderUnavailable, InvalidInput
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel

log = structlog.get_logger(__name__)


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


def resolve_model(model: Any) -> RefragModel:
    """``None`` (bundled default), a checkpoint directory, a loaded model, or an http URL."""
    if isinstance(model, RefragModel):
        return model
    if model is None:
        return default_model()
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        raise DecoderUnavailable(
            "remote decoder servers are not supported yet",
            url=model,
            fix="pass model=None, a checkpoint directory or a RefragModel",
        )
    if isinstance(model, (str, Path)):
        return RefragModel.load(model)
    raise InvalidInput(
        "model must be None, a checkpoint directory, a RefragModel or an http:// URL",
        got=type(model).__name__,
    )


def default_model() -> RefragModel:
    """The bundled model; until a trained one ships, a seeded random-weight tiny model."""
    from refrag_agent.demo import build_model

    log.warning(
        "no trained bundled model ships yet: using a random-weight tiny decoder",
        consequence="answers are noise; the memory and compression path is real",
    )
    return build_model()
