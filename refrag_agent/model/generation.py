"""Generation: prefill of an assembled batch, then KV-cache decoding, timed from the inside.

The cache holds one key/value per *position*, so a compressed chunk costs one slot instead
of ``k`` (REFRAG's KV-cache saving). Sampling options are keyword-only; temperature 0 is
greedy decoding.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from refrag_agent.errors import InvalidInput
from refrag_agent.model.assembly import AssembledBatch
from refrag_agent.model.tokenizer import Tokenizer

FinishReason = Literal["eos", "stop", "length", "cancelled"]


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How to pick each next token. ``temperature=0`` is greedy."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InvalidInput("max_new_tokens must be at least 1", value=self.max_new_tokens)
        if self.temperature < 0:
            raise InvalidInput("temperature must be >= 0", value=self.temperature)
        if self.top_k < 0:
            raise InvalidInput("top_k must be >= 0 (0 disables it)", value=self.top_k)
        if not 0 < self.top_p <= 1:
            raise InvalidInput("top_p must be in (0, 1]", value=self.top_p)
        if any(not s for s in self.stop):
            raise InvalidInput("stop strings must be non-empty", stop=self.stop)


def sample_next(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick one token per row from ``logits`` (B, V); returns (B,) token ids."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    if params.top_k:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token once the mass *before* it already reaches top_p; the first always stays.
        drop = probs.cumsum(-1) - probs >= params.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class KVCache:
    """The decoder's key/value cache plus each row's attention mask and next position."""

    def __init__(self, past: Any, attention_mask: torch.Tensor, next_positions: torch.Tensor):
        self.past = past
        self.attention_mask = attention_mask  # (B, T_so_far)
        self.next_positions = next_positions  # (B,)

    @property
    def length(self) -> int:
        return int(self.attention_mask.shape[1])

    def advance(self) -> None:
        """Account for one more decoded token in every row."""
        ones = self.attention_mask.new_ones(self.attention_mask.shape[0], 1)
        self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)  # (B, T+1)
        self.next_positions = self.next_positions + 1


def _empty_cache(decoder: Any) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=decoder.config)


@torch.inference_mode()
def prefill(decoder: Any, batch: AssembledBatch) -> tuple[torch.Tensor, KVCache]:
    """Run the prompt; returns the last position's logits (B, V) and the filled cache."""
    out = decoder(
        inputs_embeds=batch.inputs_embeds,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        cache=_empty_cache(decoder),  # `past_key_values` before transformers 5.24
        use_cache=True,
        logits_to_keep=1,  # never materialise (B, T, V) logits for a long prompt
    )
    next_positions = batch.position_ids[:, -1] + 1  # (B,)
    return out.logits[:, -1], KVCache(out.cache, batch.attention_mask, next_positions)


@torch.inference_mode()
def decode_step(decoder: Any, token_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Feed one token per row (B,) through the cache; returns next logits (B, V)."""
    cache.advance()
    out = decoder(
        input_ids=token_ids.unsqueeze(1),  # (B, 1)
        attention_mask=cache.attention_mask,
        position_ids=(cache.next_positions - 1).unsqueeze(1),  # (B, 1)
        cache=cache.past,
        use_cache=True,
        logits_to_keep=1,
    )
    cache.past = out.cache
    return out.logits[:, -1]


@dataclass
class TokenEvent:
    """One generated token of one row; ``text`` is the newly visible text (may be empty)."""

    row: int
    token_id: int
    text: str
    elapsed_s: float


@dataclass
class Generation:
    """The output of one row, with its timings measured inside the loop."""

    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: FinishReason = "length"
    ttft_s: float = 0.0
    token_times_s: list[float] = field(default_factory=list)
    prompt_positions: int = 0

    @property
    def tokens_per_s(self) -> float:
        """Decode speed after the first token."""
        total = sum(self.token_times_s)
        return len(self.token_times_s) / total if total > 0 else 0.0


class _RowText:
    """Incremental detokenisation with stop strings; holds back text a stop might still claim."""

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.ids: list[int] = []
        self.emitted = 0
        self.text = ""

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add a token; returns (newly visible text, whether a stop string ended the row)."""
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids)
        for s in self.stop:
            cut = text.find(s)
            if cut >= 0:
                self.text = text[:cut]
                return self._flush(), True
        self.text = text
        # A trailing U+FFFD is usually half of a multi-byte character: wait for the rest.
        visible = len(text.rstrip("\ufffd")) - self.hold
        delta = text[self.emitted : max(visible, self.emitted)]
        self.emitted += len(delta)
        return delta, False

    def _flush(self) -> str:
        delta = self.text[self.emitted :]
        self.emitted = len(self.text)
        return delta

    def finish(self) -> str:
        return self._flush()


def iter_generate(
    decoder: Any,
    tokenizer: Tokenizer,
    batch: AssembledBatch,
    params: SamplingParams,
    *,
    results: list[Generation],
    started: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[TokenEvent]:
    """Prefill, then decode with the cache, yielding each token as it is produced.

    ``results`` receives one :class:`Generation` per row, filled as the loop goes.
    ``started`` is the request's start (``time.perf_counter()``) so that TTFT covers
    the work done before this call (assembly, encoding); default: now.
    """
    t0 = time.perf_counter() if started is None else started
    generator = None
    if params.seed is not None:
        generator = torch.Generator().manual_seed(params.seed)
    rows = len(batch.lengths)
    results[:] = [Generation(prompt_positions=n) for n in batch.lengths]
    texts = [_RowText(tokenizer, params.stop) for _ in range(rows)]
    done = [False] * rows
    eos = tokenizer.eos_id
    logits, cache = prefill(decoder, batch)
    last = time.perf_counter()
    for step in range(params.max_new_tokens):
        if should_stop():
            for r in range(rows):
                if not done[r]:
                    results[r].finish_reason = "cancelled"
            break
        next_ids = sample_next(logits, params, generator)  # (B,)
        now = time.perf_counter()
        for r, token in enumerate(next_ids.tolist()):
            if done[r]:
                continue
            res = results[r]
            if step == 0:
                res.ttft_s = now - t0
            else:
                res.token_times_s.append(now - last)
            if token == eos:
                done[r], res.finish_reason = True, "eos"
                continue
            res.token_ids.append(token)
            delta, stopped = texts[r].push(token)
            if stopped:
                done[r], res.finish_reason = True, "stop"
            if delta:
                yield TokenEvent(row=r, token_id=token, text=delta, elapsed_s=now - t0)
        last = now
        if all(done) or step == params.max_new_tokens - 1:
            break
        # Finished rows keep decoding (their tokens are ignored) so the batch stays rectangular.
        logits = decode_step(decoder, next_ids, cache)
    for r in range(rows):
        tail = texts[r].finish()
        results[r].text = texts[r].text
        if tail:
            yield TokenEvent(row=r, token_id=-1, text=tail, elapsed_s=time.perf_counter() - t0)


_DONE = object()


async def iterate_in_thread(
    make: Callable[[Callable[[], bool]], Iterator[Any]],
) -> AsyncIterator[Any]:
    """Run a blocking iterator in its own thread and yield its items on the event loop.

    ``make`` receives a ``should_stop`` callable; when the consumer stops early (break,
    cancellation) it turns true and the worker ends after its current step.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in make(stop.is_set):
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if stop.is_set():
                    break
        except BaseException as e:  # re-raised on the consumer's side
            loop.call_soon_threadsafe(queue.put_nowait, e)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    thread = threading.Thread(target=worker, name="refrag-generate", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
