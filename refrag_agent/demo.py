"""``refrag-agent demo``: a long scripted conversation answered with compressed context.

Until the trained bundled model ships, the demo builds a tiny random-weight decoder on the
spot and says so: its answers are noise, but every figure it prints (positions fed,
tokens held, TTFT, KV-cache bytes) is measured on the real code path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refrag_agent.budget import Budget
from refrag_agent.model.chunker import Chunk
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import SamplingParams
from refrag_agent.model.refrag import RefragModel
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.policies import ChunkFeatures, PolicyInput, SimilarityPolicy
from refrag_agent.timeline import SegmentKind

QUESTIONS = (
    "What is my locker code?",
    "When does order 7731 arrive?",
    "How many days of leave can be carried over?",
)


@dataclass(frozen=True)
class DemoSegment:
    kind: SegmentKind
    text: str


@dataclass(frozen=True)
class DemoRow:
    """One answered question: what was held, what was fed, and what it cost."""

    question: str
    tokens_held: int
    positions_fed: int
    chunks_expanded: int
    chunks_compressed: int
    ttft_compressed_ms: float
    ttft_full_ms: float
    kv_compressed: int
    kv_full: int
    answer: str


def script() -> list[DemoSegment]:
    """Turns, tool outputs and a document: about 6K decoder tokens in all."""
    import textwrap

    segs = [DemoSegment(SegmentKind.SYSTEM, "You are a support agent. Answer from memory.")]
    for day in range(12):
        segs.append(
            DemoSegment(
                SegmentKind.USER, f"Day {day}: the printer on floor {day % 4} jammed again."
            )
        )
        segs.append(
            DemoSegment(
                SegmentKind.ASSISTANT,
                f"Logged ticket T-{400 + day} for the floor {day % 4} printer.",
            )
        )
    segs.append(DemoSegment(SegmentKind.USER, "My locker code is 4821, please remember it."))
    order = {"order": 7731, "status": "shipped", "eta": "Thursday", "items": ["desk lamp", "cable"]}
    segs.append(DemoSegment(SegmentKind.TOOL_OUTPUT, json.dumps(order)))
    handbook = textwrap.dedent(
        """
        Leave policy. Employees accrue two days of leave per month. Up to five days of
        unused leave can be carried over into the next year; the rest lapses on 31 March.
        Requests go to the team lead at least two weeks ahead.
        """
    ).strip()
    filler = " ".join(
        f"Section {i}: facilities, badges, parking and meeting-room etiquette." for i in range(60)
    )
    segs.append(DemoSegment(SegmentKind.DOCUMENT, f"{filler} {handbook}"))
    return segs


def build_model(encoder: ChunkEncoder | None = None) -> RefragModel:
    """A random-weight Llama (4 layers, width 256) with the byte-level tokenizer and MiniLM."""
    tokenizer = TiktokenTokenizer.byte_level()
    decoder = random_decoder(
        "llama",
        vocab_size=tokenizer.vocab_size,
        hidden_size=256,
        n_layers=4,
        n_heads=4,
        max_positions=16_384,
    )
    return RefragModel.create(tokenizer=tokenizer, decoder=decoder, encoder=encoder)


def _header(kind: SegmentKind) -> str:
    return f"<|{kind.value}|>"


def run_demo(*, budget: Budget | None = None, max_new_tokens: int = 24) -> list[DemoRow]:
    """Write the script, answer the questions; print and return one row per question."""
    print(
        "note: no trained bundled model ships yet, so this demo runs a tiny random-weight "
        "decoder built now.\n"
        "      Its answers are noise; the figures are measured on the real code path."
    )
    budget = budget or Budget(p=0.1)
    model = build_model()
    segments = script()
    started = time.perf_counter()
    chunked: list[list[Chunk]] = [model.chunk(s.text) for s in segments]
    flat = [c for group in chunked for c in group]
    vectors = model.encode(flat)  # (n_chunks, enc_dim): computed once, on write
    print(
        f"wrote {len(segments)} segments, {len(flat)} chunks of k={model.k} tokens, "
        f"encoded in {time.perf_counter() - started:.2f}s"
    )
    features: list[ChunkFeatures] = []
    for seg_index, (seg, group) in enumerate(zip(segments, chunked, strict=True)):
        for c in group:
            features.append(
                ChunkFeatures(
                    kind=seg.kind,
                    domain=seg.kind.value,
                    n_tokens=c.n_tokens,
                    position=len(features),
                    age=float(len(segments) - seg_index),
                    pinned=seg.kind is SegmentKind.SYSTEM,
                )
            )
    rows = []
    policy = SimilarityPolicy()
    params = SamplingParams(max_new_tokens=max_new_tokens)
    for question in QUESTIONS:
        selection = policy.select(
            PolicyInput(vectors, model.encode([question])[0], tuple(features)), budget
        )
        expand = set(selection.indices)
        parts: list[str | tuple[Sequence[Chunk], torch.Tensor, set[int]]] = []
        offset = 0
        for seg, group in zip(segments, chunked, strict=True):
            n = len(group)
            local = {i - offset for i in expand if offset <= i < offset + n}
            parts += [_header(seg.kind), (group, vectors[offset : offset + n], local), "<|end|>"]
            offset += n
        parts.append(f"<|user|>{question}<|end|><|assistant|>")
        compressed = model.plan(parts)
        full = model.plan(
            [
                *(f"{_header(s.kind)}{s.text}<|end|>" for s in segments),
                f"<|user|>{question}<|end|><|assistant|>",
            ]
        )
        model.generate([full], SamplingParams(max_new_tokens=1))  # warm-up
        fast = model.generate([compressed], params)[0]
        slow = model.generate([full], SamplingParams(max_new_tokens=1))[0]
        rows.append(
            DemoRow(
                question=question,
                tokens_held=full.n_positions,
                positions_fed=compressed.n_positions,
                chunks_expanded=compressed.n_expanded,
                chunks_compressed=compressed.n_compressed,
                ttft_compressed_ms=1e3 * fast.ttft_s,
                ttft_full_ms=1e3 * slow.ttft_s,
                kv_compressed=model.shape.kv_bytes(compressed.n_positions),
                kv_full=model.shape.kv_bytes(full.n_positions),
                answer=fast.text,
            )
        )
    print(format_rows(rows))
    return rows


def format_rows(rows: Sequence[DemoRow]) -> str:
    head = (
        f"{'question':<44} {'held':>6} {'fed':>5} {'expanded':>8} "
        f"{'TTFT refrag':>11} {'TTFT full':>10} {'KV refrag':>10} {'KV full':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.question:<44} {r.tokens_held:>6} {r.positions_fed:>5} {r.chunks_expanded:>8} "
            f"{r.ttft_compressed_ms:>9.1f}ms {r.ttft_full_ms:>8.1f}ms "
            f"{r.kv_compressed / 1024:>6.0f} KiB {r.kv_full / 1024:>6.0f} KiB"
        )
    lines.append("(KV-cache bytes at fp16; held = tokens in memory, fed = decoder positions)")
    return "\n".join(lines)
