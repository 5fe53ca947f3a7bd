"""The in-process engine: the model runs here, in one decoding thread off the event loop.

Concurrent calls (several sessions of one agent, or several agents sharing the engine)
are decoded together, as the server decodes concurrent requests: one
:class:`~refrag_agent.engines.scheduler.Scheduler` prefills the calls waiting between two
decoding steps as one batch, merges them into the running batch and decodes one token for
every row per step. Greedy answers are those of one call at a time, up to float rounding
(``docs/serve.md``, "Concurrency"). A call cancelled mid-way (a stream left early, a task
cancelled) leaves the batch at the next step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from refrag_agent.engines.scheduler import BatchLimits, Scheduler, Ticket
from refrag_agent.errors import DecoderUnavailable
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel


class LocalEngine:
    """A :class:`RefragModel` in this process; one engine may serve several agents.

    ``limits``: how many calls decode together (default: 16 rows; calls beyond wait for
    a row, with no time limit). ``scheduler.snapshot()`` tells how many rows decode now
    and how many calls were served, prefilled together and decoded together. A call the
    decoder fails raises :class:`~refrag_agent.engines.scheduler.JobError`, the decoder's
    exception as its cause; the calls decoding with it fail too, later ones run.
    """

    def __init__(self, model: RefragModel, *, limits: BatchLimits | None = None) -> None:
        self.model = model
        self.scheduler = Scheduler(model, limits)
        self._closed = False

    def _submit(self, plan: PlacementPlan, params: SamplingParams) -> Ticket:
        if self._closed:
            raise DecoderUnavailable("the engine is closed", fix="open a new Agent")
        started = time.perf_counter()
        self.model.check_fits([plan], params.max_new_tokens)
        return self.scheduler.submit(plan, params, started=started)

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation:
        """Decode ``plan`` (in a batch with the calls in flight) and return the whole answer."""
        ticket = self._submit(plan, params)
        try:
            return await ticket.result()
        finally:
            ticket.cancel()  # a no-op once answered; frees the row if this call was cancelled

    async def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]:
        """Token events as they are decoded, then the :class:`Generation`.

        Leaving the loop early (or cancelling the task) frees the call's row at the next
        decoding step.
        """
        ticket = self._submit(plan, params)
        try:
            async for item in ticket.events():
                yield item
        finally:
            ticket.cancel()

    async def aclose(self) -> None:
        """Refuse new calls (:class:`DecoderUnavailable`), finish the calls in flight, then
        stop the decoding thread."""
        self._closed = True
        await asyncio.to_thread(self.scheduler.close, drain=True, timeout_s=None)
