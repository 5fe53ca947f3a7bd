"""The in-process engine: the model runs here, off the event loop.

Calls are served one at a time, in arrival order: on a CPU a second concurrent prefill
only competes for the same cores, and greedy answers stay identical to sequential runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from refrag_agent.errors import DecoderUnavailable
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel


class LocalEngine:
    """A :class:`RefragModel` in this process; one engine may serve several agents."""

    def __init__(self, model: RefragModel) -> None:
        self.model = model
        self._lock = asyncio.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise DecoderUnavailable("the engine is closed", fix="open a new Agent")

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation:
        """Decode ``plan`` in a worker thread and return the whole answer."""
        self._check_open()
        async with self._lock:
            results = await asyncio.to_thread(self.model.generate, [plan], params)
        return results[0]

    async def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]:
        """Token events as they are decoded, then the :class:`Generation`."""
        self._check_open()
        async with self._lock:
            async for item in self.model.stream(plan, params):
                yield item

    async def aclose(self) -> None:
        """Wait for the call in progress; later calls raise :class:`DecoderUnavailable`."""
        async with self._lock:
            self._closed = True
