"""Time to first token: the same decoder fed full tokens versus compressed chunks.

Both sides run through the same assembly and generation path, side by side in one run,
on a random-weight Llama of about 50M parameters (latency does not depend on the
weights' values). Compressed TTFT is reported with chunk embeddings already computed
(cached) and again with the encoder's time included (uncached).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from refrag_agent.bench.common import median, percentile, run_header, write_json
from refrag_agent.model.assembly import CompressedChunk, PlacementPlan, TokenSpan, assemble
from refrag_agent.model.config import ProjectorConfig
from refrag_agent.model.decoder import DecoderShape
from refrag_agent.model.encoder import ChunkEncoder
from refrag_agent.model.generation import SamplingParams, iter_generate
from refrag_agent.model.projector import Projector
from refrag_agent.model.tiny import random_decoder
from refrag_agent.model.tokenizer import TiktokenTokenizer

QUERY_TOKENS = 32
VOCAB = 32_000


def bench_decoder() -> Any:
    """Random Llama, ~50M parameters: 10 layers of width 512, 32K vocabulary, tied."""
    return random_decoder(
        "llama",
        vocab_size=VOCAB,
        hidden_size=512,
        n_layers=10,
        n_heads=8,
        intermediate_size=1536,
        max_positions=32_768,
    )


def chunk_texts(encoder: ChunkEncoder, n_chunks: int, k: int) -> list[str]:
    """``n_chunks`` texts of ``k`` encoder tokens each, cut from a standard-library source
    file (real text present on every machine), so the encoder reads what it would read."""
    import argparse

    text = Path(argparse.__file__).read_text(encoding="utf-8")
    ids = encoder.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    n = len(ids) // k
    return [encoder.tokenizer.decode(ids[(i % n) * k : (i % n + 1) * k]) for i in range(n_chunks)]


def _ttft(decoder: Any, tokenizer: Any, projector: Projector, plan: PlacementPlan) -> float:
    """Assembly + prefill + first token, in seconds."""
    started = time.perf_counter()
    with torch.inference_mode():
        batch = assemble([plan], decoder.get_input_embeddings(), projector)
    results: list[Any] = []
    for _ in iter_generate(
        decoder,
        tokenizer,
        batch,
        SamplingParams(max_new_tokens=1),
        results=results,
        started=started,
    ):
        pass
    return float(results[0].ttft_s)


def _time_assembly(decoder: Any, projector: Projector, plan: PlacementPlan) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        assemble([plan], decoder.get_input_embeddings(), projector)
    return time.perf_counter() - started


def run_latency_bench(
    *,
    quick: bool = False,
    json_path: Path | None = None,
    contexts: Sequence[int] | None = None,
    ks: Sequence[int] = (8, 16, 32),
    repeats: int | None = None,
    encoder: ChunkEncoder | None = None,
) -> dict[str, Any]:
    """Measure, print a table, write JSON; returns the payload."""
    contexts = tuple(contexts or ((2048, 8192) if quick else (2048, 8192, 16384)))
    repeats = repeats or (2 if quick else 5)
    decoder = bench_decoder()
    shape = DecoderShape.of(decoder)
    n_params = sum(p.numel() for p in decoder.parameters())
    tokenizer = TiktokenTokenizer.byte_level()  # only its eos id is read; ids are random
    encoder = encoder or ChunkEncoder.load()
    projector = Projector(ProjectorConfig(in_dim=encoder.dim, out_dim=shape.hidden_size)).eval()
    bytes_per_value = next(decoder.parameters()).element_size()
    gen = torch.Generator().manual_seed(0)
    query = TokenSpan(tuple(torch.randint(0, VOCAB, (QUERY_TOKENS,), generator=gen).tolist()))

    # Warm-up: first calls pay for allocation and kernel selection.
    _ttft(decoder, tokenizer, projector, PlacementPlan((TokenSpan(tuple(range(256))), query)))

    rows = []
    steps = len(contexts) * (1 + len(ks))
    bar = tqdm(total=steps, desc="bench latency", unit="case")
    for n in contexts:
        context = TokenSpan(tuple(torch.randint(0, VOCAB, (n,), generator=gen).tolist()))
        full_plan = PlacementPlan((context, query))
        full = [_ttft(decoder, tokenizer, projector, full_plan) for _ in range(repeats)]
        bar.update()
        for k in ks:
            n_chunks = n // k
            texts = chunk_texts(encoder, n_chunks, k)
            vectors = encoder.encode(texts)  # (n_chunks, enc_dim), the cache's content
            plan = PlacementPlan(
                (*(CompressedChunk(i, n_tokens=k) for i in range(n_chunks)), query),
                chunk_embeddings=vectors,
            )
            cached = [_ttft(decoder, tokenizer, projector, plan) for _ in range(repeats)]
            assembly = [_time_assembly(decoder, projector, plan) for _ in range(repeats)]
            uncached = []
            for _ in range(max(1, repeats // 2)):
                started = time.perf_counter()
                encoder.encode(texts)
                uncached.append(time.perf_counter() - started + median(cached))
            rows.append(
                {
                    "context_tokens": n,
                    "k": k,
                    "positions_full": full_plan.n_positions,
                    "positions_compressed": plan.n_positions,
                    "full_ttft_ms": 1e3 * median(full),
                    "full_ttft_p90_ms": 1e3 * percentile(full, 90),
                    "compressed_ttft_ms": 1e3 * median(cached),
                    "compressed_ttft_p90_ms": 1e3 * percentile(cached, 90),
                    "uncached_ttft_ms": 1e3 * median(uncached),
                    "assembly_ms": 1e3 * median(assembly),
                    "assembly_share": median(assembly) / median(cached),
                    "speedup": median(full) / median(cached),
                    "speedup_uncached": median(full) / median(uncached),
                    "kv_bytes_full": shape.kv_bytes(
                        full_plan.n_positions, bytes_per_value=bytes_per_value
                    ),
                    "kv_bytes_compressed": shape.kv_bytes(
                        plan.n_positions, bytes_per_value=bytes_per_value
                    ),
                }
            )
            bar.update()
    bar.close()
    payload = {
        **run_header("latency"),
        "model": {
            "decoder": "random Llama",
            "parameters": n_params,
            "hidden_size": shape.hidden_size,
            "layers": shape.n_layers,
            "dtype": str(next(decoder.parameters()).dtype),
            "encoder": encoder.config.path,
        },
        "repeats": repeats,
        "rows": rows,
    }
    print(format_table(rows))
    write_json(json_path, payload)
    return payload


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'context':>8} {'k':>3} {'full ms':>10} {'refrag ms':>10} {'speedup':>8} "
        f"{'uncached ms':>12} {'speedup':>8} {'assembly':>9} {'KV full':>10} {'KV refrag':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['context_tokens']:>8} {r['k']:>3} {r['full_ttft_ms']:>10.1f} "
            f"{r['compressed_ttft_ms']:>10.1f} {r['speedup']:>7.1f}x "
            f"{r['uncached_ttft_ms']:>12.1f} {r['speedup_uncached']:>7.1f}x "
            f"{100 * r['assembly_share']:>8.1f}% {_mib(r['kv_bytes_full']):>10} "
            f"{_mib(r['kv_bytes_compressed']):>10}"
        )
    return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
