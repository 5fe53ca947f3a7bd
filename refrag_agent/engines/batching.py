"""Batched step-wise decoding: requests join the batch between steps and leave when done.

Used by the :class:`~refrag_agent.engines.scheduler.Scheduler`, which both the in-process
engine and the server run.

A :class:`DecodeBatch` holds the rows being decoded and their shared KV cache. New rows
are prefilled together in one left-padded call (:func:`~refrag_agent.model.generation.
prefill`) and merged into the running cache by left-padding the shorter side, so a
request that arrives mid-flight waits for one step, not for a whole batch to finish. A
row that ends (end of text, stop string, token limit, client gone, deadline) leaves at
once: its cache rows are dropped and columns no remaining row attends to are cut, so a
step costs what the live rows need. Each full-attention layer keeps its keys and values at
the front of a longer buffer (:class:`_RoomyLayer`), so a step writes one column instead
of copying the whole cache, as ``torch.cat`` would, once per layer.

Greedy rows give the tokens of one-at-a-time decoding up to float rounding: padding
changes the shapes of the matrix products, not the maths (a masked key weighs exactly 0).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, Union

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer

from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import (
    FinishReason,
    Generation,
    KVCache,
    SamplingParams,
    TokenEvent,
    _RowText,
    decode_step,
    prefill,
    sample_next,
)
from refrag_agent.model.refrag import RefragModel


@dataclass(frozen=True)
class JobFailed:
    """A job that ended without an answer: ran out of time, the decoder failed, shutdown.

    ``cause``: the exception the decoder raised, if any (not part of equality).
    """

    reason: Literal["timeout", "error", "shutdown"]
    message: str
    cause: BaseException | None = field(default=None, compare=False)


JobEvent: TypeAlias = Union[TokenEvent, Generation, JobFailed]  # noqa: UP007


@dataclass(eq=False)
class Job:
    """One request for the decoder: a plan, how to sample it, and where its events go.

    ``emit`` is called from the decoding thread and must be thread-safe. Every job gets
    exactly one final event: a :class:`Generation` or a :class:`JobFailed` (none when
    it was cancelled: nobody is listening).
    """

    plan: PlacementPlan
    params: SamplingParams
    emit: Callable[[JobEvent], None]
    started: float = field(default_factory=time.perf_counter)
    deadline: float = math.inf
    ignore_eos: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)

    def expired(self, now: float) -> bool:
        return now > self.deadline


class _Row:
    """A job being decoded: its text so far, its timings, its sampling generator."""

    def __init__(self, job: Job, model: RefragModel) -> None:
        self.job = job
        self.eos = model.tokenizer.eos_id
        self.text = _RowText(model.tokenizer, job.params.stop)
        self.result = Generation(prompt_positions=job.plan.n_positions)
        self.generator = None
        if job.params.seed is not None:
            self.generator = torch.Generator().manual_seed(job.params.seed)
        self.n_sampled = 0
        self.last = 0.0
        self.done = False

    def take(self, token: int, now: float) -> None:
        """Record one sampled token; emit its visible text; end the row when it is over."""
        job, res = self.job, self.result
        if self.n_sampled == 0:
            res.ttft_s = now - job.started
        else:
            res.token_times_s.append(now - self.last)
        self.n_sampled += 1
        self.last = now
        if token == self.eos and not job.ignore_eos:
            self.finish("eos")
            return
        res.token_ids.append(token)
        delta, stopped = self.text.push(token)
        if delta:
            job.emit(TokenEvent(row=0, token_id=token, text=delta, elapsed_s=now - job.started))
        if stopped:
            self.finish("stop")
        elif self.n_sampled >= job.params.max_new_tokens:
            self.finish("length")

    def finish(self, reason: FinishReason) -> None:
        self.done = True
        self.result.finish_reason = reason
        tail = self.text.finish()
        self.result.text = self.text.text
        if reason == "cancelled":
            return  # the client is gone: nothing to send
        if tail:
            elapsed = time.perf_counter() - self.job.started
            self.job.emit(TokenEvent(row=0, token_id=-1, text=tail, elapsed_s=elapsed))
        self.job.emit(self.result)

    def fail(self, failure: JobFailed) -> None:
        self.done = True
        self.result.finish_reason = "cancelled"
        self.job.emit(failure)


class DecodeBatch:
    """The rows decoded together, their KV cache and the token each feeds next."""

    def __init__(self, model: RefragModel) -> None:
        self.model = model
        self.rows: list[_Row] = []
        self.cache: KVCache | None = None
        self.next_ids: torch.Tensor | None = None  # (B,)

    @property
    def can_join(self) -> bool:
        """Whether new rows can be merged into the running cache (full-attention layers)."""
        if self.cache is None:
            return True
        layers = getattr(self.cache.past, "layers", None)
        return layers is not None and all(
            not getattr(layer, "is_sliding", False) and hasattr(layer, "keys") for layer in layers
        )

    def admit(self, jobs: Sequence[Job]) -> None:
        """Prefill ``jobs`` as one left-padded batch, sample their first tokens, merge them."""
        with torch.inference_mode():
            assembled = self.model.assemble([job.plan for job in jobs])
        logits, cache = prefill(self.model.decoder, assembled)  # (n, V)
        _make_room(cache)
        rows = [_Row(job, self.model) for job in jobs]
        ids = self._sample(rows, logits)
        if self.cache is None or self.next_ids is None:
            self.rows, self.cache, self.next_ids = rows, cache, ids
            return
        self.cache = _merge(self.cache, cache)
        self.rows += rows
        self.next_ids = torch.cat([self.next_ids, ids])

    def step(self) -> None:
        """Decode one token for every row."""
        assert self.cache is not None and self.next_ids is not None
        logits = decode_step(self.model.decoder, self.next_ids, self.cache)  # (B, V)
        self.next_ids = self._sample(self.rows, logits)

    def prune(self, now: float) -> list[_Row]:
        """End cancelled and expired rows, drop every ended row; returns the dropped ones."""
        for row in self.rows:
            if row.done:
                continue
            if row.job.cancelled.is_set():
                row.finish("cancelled")
            elif row.job.expired(now):
                row.fail(JobFailed("timeout", "the request ran past its time limit"))
        gone = [row for row in self.rows if row.done]
        if not gone:
            return []
        keep = [i for i, row in enumerate(self.rows) if not row.done]
        if not keep:
            self.rows, self.cache, self.next_ids = [], None, None
            return gone
        assert self.cache is not None and self.next_ids is not None
        index = torch.tensor(keep)
        self.rows = [self.rows[i] for i in keep]
        self.next_ids = self.next_ids[index]
        self.cache = _select(self.cache, index, trim=self.can_join)
        return gone

    def fail_all(self, failure: JobFailed) -> list[_Row]:
        """End every row with ``failure`` (the decoder raised); the batch is empty after."""
        gone = self.rows
        for row in gone:
            if not row.done:
                row.fail(failure)
        self.rows, self.cache, self.next_ids = [], None, None
        return gone

    def _sample(self, rows: Sequence[_Row], logits: torch.Tensor) -> torch.Tensor:
        """One token per row (B,), each with its own params; greedy rows share one argmax.

        A row whose sampling fails (non-finite logits) ends alone: rows never share values,
        so one request's bad input cannot spoil another's answer.
        """
        picks = logits.argmax(dim=-1)  # (B,)
        for i, row in enumerate(rows):
            params = row.job.params
            if params.temperature <= 0:
                continue
            try:
                picks[i] = sample_next(logits[i : i + 1], params, row.generator)[0]
            except RuntimeError:  # non-finite logits: this row ends, the others go on
                row.fail(JobFailed("error", "sampling failed: the logits are not finite"))
        now = time.perf_counter()
        for row, token in zip(rows, picks.tolist(), strict=True):
            if not row.done:
                row.take(token, now)
        return picks


def _layers(cache: KVCache) -> list[Any]:
    return list(cache.past.layers)


class _RoomyLayer(DynamicLayer):
    """A full-attention cache layer that appends in place.

    ``keys`` and ``values`` stay what transformers expects, (B, H, T, D) tensors; here they
    are views of the first T columns of (B, H, T + room, D) buffers, and an update writes
    the new columns after them. Anything that replaces ``keys`` (a merge, a row selection,
    a trim) leaves them outside the buffer: the next update copies them into a new one.
    """

    def __init__(self) -> None:
        super().__init__()
        self._room: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys, self.values
        assert keys is not None and values is not None  # made from a filled layer
        n, add = keys.shape[-2], key_states.shape[-2]
        if not self._holds(keys, values, n + add):
            # Grow by an eighth (at least 64 columns): a copy every few dozen steps at most.
            room = n + add + max(64, n // 8)
            grown_k = keys.new_empty((*keys.shape[:2], room, keys.shape[-1]))  # (B, H, room, D)
            grown_v = values.new_empty((*values.shape[:2], room, values.shape[-1]))
            grown_k[:, :, :n] = keys
            grown_v[:, :, :n] = values
            self._room = (grown_k, grown_v)
        assert self._room is not None
        buffer_k, buffer_v = self._room
        buffer_k[:, :, n : n + add] = key_states
        buffer_v[:, :, n : n + add] = value_states
        self.keys, self.values = buffer_k[:, :, : n + add], buffer_v[:, :, : n + add]
        return self.keys, self.values

    def _holds(self, keys: torch.Tensor, values: torch.Tensor, width: int) -> bool:
        """Whether ``keys``/``values`` start the buffers and ``width`` columns fit them."""
        if self._room is None:
            return False
        return all(
            live.data_ptr() == buffer.data_ptr()
            and live.stride() == buffer.stride()
            and live.shape[:2] == buffer.shape[:2]
            and width <= buffer.shape[-2]
            for live, buffer in zip((keys, values), self._room, strict=True)
        )


def _make_room(cache: KVCache) -> None:
    """Swap each plain full-attention layer of a filled cache for a :class:`_RoomyLayer`."""
    layers = getattr(cache.past, "layers", None)
    if layers is None:
        return
    for i, layer in enumerate(layers):
        if type(layer) is DynamicLayer and layer.is_initialized:
            roomy = _RoomyLayer()
            roomy.__dict__.update(layer.__dict__)  # device, dtype, keys, values, flags
            layers[i] = roomy


def _merge(old: KVCache, new: KVCache) -> KVCache:
    """One cache holding both batches' rows, left-padded to the longer one."""
    width = max(old.length, new.length)

    def pad(t: torch.Tensor, length: int) -> torch.Tensor:  # (B, H, T, D) -> (B, H, width, D)
        return F.pad(t, (0, 0, width - length, 0))

    for mine, theirs in zip(_layers(old), _layers(new), strict=True):
        mine.keys = torch.cat([pad(mine.keys, old.length), pad(theirs.keys, new.length)])
        mine.values = torch.cat([pad(mine.values, old.length), pad(theirs.values, new.length)])
    mask = torch.cat(
        [
            F.pad(old.attention_mask, (width - old.length, 0)),
            F.pad(new.attention_mask, (width - new.length, 0)),
        ]
    )  # (B_old + B_new, width); padded columns are 0
    return KVCache(old.past, mask, torch.cat([old.next_positions, new.next_positions]))


def _select(cache: KVCache, index: torch.Tensor, *, trim: bool) -> KVCache:
    """Keep rows ``index``; with ``trim``, also cut leading columns no kept row attends to."""
    cache.past.batch_select_indices(index)
    mask = cache.attention_mask[index]  # (B_kept, T)
    start = int((mask.sum(dim=0) > 0).nonzero()[0]) if trim else 0
    if start:
        for layer in _layers(cache):
            layer.keys = layer.keys[:, :, start:]
            layer.values = layer.values[:, :, start:]
        mask = mask[:, start:]
    return KVCache(cache.past, mask, cache.next_positions[index])
