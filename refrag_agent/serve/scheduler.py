"""A bounded queue in front of one decoding thread that serves requests in batches.

The event loop submits jobs; the worker thread takes as many waiting jobs as the batch
has room for (``max_batch`` rows, ``max_batch_positions`` padded positions per prefill),
prefills them together, merges them into the running batch and decodes one step at a
time for every row (:mod:`refrag_agent.serve.batching`). At most ``max_batch +
max_queue`` jobs are in flight; one more is refused with :class:`ServerBusy` (HTTP 429).
A cancelled job (its client went away) leaves the queue at once, or the batch at the
next step, and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from refrag_agent.errors import DecoderUnavailable, RefragFailure
from refrag_agent.logs import get_logger
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel
from refrag_agent.serve.batching import DecodeBatch, Job, JobEvent, JobFailed
from refrag_agent.serve.limits import ServeLimits

log = get_logger(__name__)


class ServerBusy(RefragFailure):
    """Every slot (running rows and queue places) is taken; try again shortly."""


class JobError(RefragFailure):
    """A job ended without an answer (``reason``: timeout, error or shutdown)."""

    def __init__(self, failure: JobFailed) -> None:
        super().__init__(failure.message, reason=failure.reason)
        self.reason = failure.reason


@dataclass
class Counters:
    """What the scheduler has done since it started (``GET /health``)."""

    served: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    prefills: int = 0
    max_rows: int = 0


class Ticket:
    """The event-loop side of one job: its events, and a way to cancel it."""

    def __init__(self, scheduler: Scheduler, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduler = scheduler
        self._loop = loop
        self._queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._finished = False
        self.job: Job | None = None

    def emit(self, event: JobEvent) -> None:
        """Thread-safe: hand one event to the event loop (dropped once the loop is closed)."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    async def events(self) -> AsyncIterator[TokenEvent | Generation]:
        """Token events, then the final :class:`Generation`; a failure raises JobError."""
        while True:
            event = await self._queue.get()
            if isinstance(event, (JobFailed, Generation)):
                self._finished = True
            if isinstance(event, JobFailed):
                raise JobError(event)
            yield event
            if isinstance(event, Generation):
                return

    async def result(self) -> Generation:
        """Wait for the whole answer."""
        final = None
        async for event in self.events():
            if isinstance(event, Generation):
                final = event
        assert final is not None  # events() ends with the Generation or raises
        return final

    def cancel(self) -> None:
        """Stop the job (no-op once it has finished); its slot is freed."""
        if self.job is not None and not self._finished:
            self._scheduler.cancel(self.job)


class Scheduler:
    """Owns the decoding thread; started on the first submit, stopped by :meth:`close`."""

    def __init__(self, model: RefragModel, limits: ServeLimits) -> None:
        self.model = model
        self.limits = limits
        self.counters = Counters()
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._active = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def capacity(self) -> int:
        return self.limits.max_batch + self.limits.max_queue

    def submit(
        self,
        plan: PlacementPlan,
        params: SamplingParams,
        *,
        started: float,
        ignore_eos: bool = False,
    ) -> Ticket:
        """Queue a plan; its events arrive on the calling event loop's :class:`Ticket`."""
        ticket = Ticket(self, asyncio.get_running_loop())
        job = Job(
            plan,
            params,
            ticket.emit,
            started=started,
            deadline=started + self.limits.max_request_s,
            ignore_eos=ignore_eos,
        )
        with self._cond:
            if self._stopping:
                raise DecoderUnavailable("the server is shutting down")
            if len(self._waiting) + self._active >= self.capacity:
                self.counters.rejected += 1
                raise ServerBusy(
                    "the server is busy: every decoding row and queue place is taken",
                    in_flight=len(self._waiting) + self._active,
                    capacity=self.capacity,
                )
            self._waiting.append(job)
            self._start()
            self._cond.notify()
        ticket.job = job
        return ticket

    def cancel(self, job: Job) -> None:
        """Cancel ``job``: out of the queue now, or out of the batch at the next step."""
        job.cancelled.set()
        with self._cond:
            if job in self._waiting:
                self._waiting.remove(job)
                self.counters.cancelled += 1

    def snapshot(self) -> dict[str, Any]:
        """Rows decoding, jobs waiting and the counters, as JSON."""
        with self._cond:
            return {
                "decoding": self._active,
                "waiting": len(self._waiting),
                "capacity": self.capacity,
                **vars(self.counters),
            }

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the worker; jobs still waiting or decoding end with a shutdown failure."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="refrag-serve", daemon=True)
            self._thread.start()

    def _take(self, batch: DecodeBatch) -> list[Job]:
        """Waiting jobs that fit the batch's free rows and one prefill's positions."""
        room = self.limits.max_batch - len(batch.rows)
        if room <= 0 or (batch.rows and not batch.can_join):
            return []
        taken: list[Job] = []
        widest = 0
        while self._waiting and len(taken) < room:
            width = max(widest, self._waiting[0].plan.n_positions)
            if taken and width * (len(taken) + 1) > self.limits.max_batch_positions:
                break
            taken.append(self._waiting.popleft())
            widest = width
        self._active += len(taken)
        return taken

    def _run(self) -> None:
        batch = DecodeBatch(self.model)
        while True:
            with self._cond:
                while not (self._stopping or self._waiting or batch.rows):
                    self._cond.wait()
                if self._stopping:
                    break
                self._expire_waiting(time.perf_counter())
                jobs = self._take(batch)
            self._advance(batch, jobs)
        shutdown = JobFailed("shutdown", "the server is shutting down")
        with self._cond:
            waiting, self._waiting = list(self._waiting), deque()
            self.counters.failed += len(waiting)
        for job in waiting:
            job.emit(shutdown)
        for row in batch.fail_all(shutdown):
            self._end(row.job, "failed")

    def _advance(self, batch: DecodeBatch, jobs: list[Job]) -> None:
        """Admit ``jobs`` (or, with none, decode one step), then settle the rows that ended."""
        now = time.perf_counter()
        ready = []
        for job in jobs:
            if job.cancelled.is_set():
                self._end(job, "cancelled")
            elif job.expired(now):
                job.emit(JobFailed("timeout", "the request waited past the server's time limit"))
                self._end(job, "failed")
            else:
                ready.append(job)
        try:
            if ready:
                batch.admit(ready)
                self.counters.prefills += 1
            elif batch.rows:
                batch.step()
        except Exception:  # a decoder failure ends the rows in flight, not the server
            log.exception("decoding failed", rows=len(batch.rows), joining=len(ready))
            failure = JobFailed("error", "the decoder failed; the server log has details")
            joined = {id(row.job) for row in batch.rows}
            for job in ready:
                if id(job) not in joined:
                    job.emit(failure)
                    self._end(job, "failed")
            for row in batch.fail_all(failure):
                self._end(row.job, "failed")
            return
        self.counters.max_rows = max(self.counters.max_rows, len(batch.rows))
        for row in batch.prune(time.perf_counter()):
            if row.job.cancelled.is_set():
                self._end(row.job, "cancelled")
            else:
                self._end(
                    row.job, "failed" if row.result.finish_reason == "cancelled" else "served"
                )

    def _expire_waiting(self, now: float) -> None:
        """Time out queued jobs past their deadline (the lock is held)."""
        for job in [j for j in self._waiting if j.expired(now)]:
            self._waiting.remove(job)
            self.counters.failed += 1
            job.emit(JobFailed("timeout", "the request waited past the server's time limit"))

    def _end(self, job: Job, outcome: Literal["served", "cancelled", "failed"]) -> None:
        """A job taken from the queue has ended: free its slot and count it."""
        with self._cond:
            self._active -= 1
            if outcome == "served":
                self.counters.served += 1
            elif outcome == "cancelled":
                self.counters.cancelled += 1
            else:
                self.counters.failed += 1
