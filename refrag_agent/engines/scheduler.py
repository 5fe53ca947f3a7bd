"""A queue in front of one decoding thread that serves requests in batches.

The in-process engine (:class:`~refrag_agent.engines.LocalEngine`) and the server
(``refrag-agent serve``) each run one. Callers on an event loop submit jobs; the worker
thread takes as many waiting jobs as the batch has room for (``max_batch`` rows,
``max_batch_positions`` padded positions per prefill), prefills them together, merges
them into the running batch and decodes one step at a time for every row
(:mod:`refrag_agent.engines.batching`). With a ``max_queue``, at most ``max_batch +
max_queue`` jobs are in flight and one more is refused with :class:`SchedulerBusy` (the
server's 429); without one, jobs wait for a row. A cancelled job (its caller went away)
leaves the queue at once, or the batch at the next step, and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from refrag_agent.engines.batching import DecodeBatch, Job, JobEvent, JobFailed
from refrag_agent.errors import DecoderUnavailable, InvalidInput, RefragFailure
from refrag_agent.logs import get_logger
from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel

log = get_logger(__name__)


class SchedulerBusy(RefragFailure):
    """Every slot (running rows and queue places) is taken; try again shortly."""


class JobError(RefragFailure):
    """A job ended without an answer (``reason``: timeout, error or shutdown)."""

    def __init__(self, failure: JobFailed) -> None:
        super().__init__(failure.message, reason=failure.reason)
        self.reason = failure.reason


@dataclass(frozen=True, kw_only=True)
class BatchLimits:
    """How much one decoding thread runs at once.

    ``max_batch`` rows decode together; ``max_queue`` more may wait for a row (``None``:
    no limit, a job waits as long as it takes). ``max_batch_positions`` caps the padded
    positions (rows x longest prompt) prefilled in one decoder call, which bounds peak
    memory. ``max_request_s`` runs from a job's submission to its last token, queue wait
    included (default: no limit).
    """

    max_batch: int = 16
    max_queue: int | None = None
    max_batch_positions: int = 65_536
    max_request_s: float = math.inf

    def __post_init__(self) -> None:
        least = {"max_batch": 1, "max_batch_positions": 1, "max_queue": 0}
        for name, low in least.items():
            value = getattr(self, name)
            if name == "max_queue" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInput(f"{name} must be an int >= {low}", value=repr(value))
        if not self.max_request_s > 0:
            raise InvalidInput("max_request_s must be positive", value=repr(self.max_request_s))

    @property
    def capacity(self) -> int | None:
        """Jobs in flight at most (rows and queue places); ``None`` without a queue limit."""
        return None if self.max_queue is None else self.max_batch + self.max_queue


@dataclass
class Counters:
    """What the scheduler has done since it started (the server's ``GET /health``)."""

    served: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    prefills: int = 0
    steps: int = 0
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
                raise JobError(event) from event.cause
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

    def __init__(self, model: RefragModel, limits: BatchLimits | None = None) -> None:
        self.model = model
        self.limits = limits or BatchLimits()
        self.counters = Counters()
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._active = 0
        self._stopping = False
        self._draining = False
        self._thread: threading.Thread | None = None

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
        capacity = self.limits.capacity
        with self._cond:
            if self._stopping:
                raise DecoderUnavailable("the decoder is shutting down")
            if capacity is not None and len(self._waiting) + self._active >= capacity:
                self.counters.rejected += 1
                raise SchedulerBusy(
                    "the decoder is busy: every decoding row and queue place is taken",
                    in_flight=len(self._waiting) + self._active,
                    capacity=capacity,
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
                "capacity": self.limits.capacity,
                **vars(self.counters),
            }

    def close(self, *, drain: bool = False, timeout_s: float | None = 10.0) -> None:
        """Stop the worker and refuse new jobs (:class:`DecoderUnavailable`).

        Jobs still waiting or decoding end with a shutdown failure, or, with ``drain``,
        are decoded to their end first. Waits up to ``timeout_s`` (``None``: no limit).
        """
        with self._cond:
            self._stopping = True
            self._draining = drain
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="refrag-decode", daemon=True)
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
                if self._stopping and not (self._draining and (self._waiting or batch.rows)):
                    break
                self._expire_waiting(time.perf_counter())
                jobs = self._take(batch)
            self._advance(batch, jobs)
        shutdown = JobFailed("shutdown", "the decoder is shutting down")
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
                job.emit(JobFailed("timeout", "the request waited past its time limit"))
                self._end(job, "failed")
            else:
                ready.append(job)
        try:
            # Counted first: a caller that sees its tokens sees the call that made them.
            if ready:
                self.counters.prefills += 1
                batch.admit(ready)
            elif batch.rows:
                self.counters.steps += 1
                batch.step()
        except Exception as e:  # a decoder failure ends the rows in flight, not the thread
            log.exception("decoding failed", rows=len(batch.rows), joining=len(ready))
            failure = JobFailed("error", "the decoder failed; the log has details", cause=e)
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
            job.emit(JobFailed("timeout", "the request waited past its time limit"))

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
