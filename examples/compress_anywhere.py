"""Compress anywhere: a document in the middle of a prompt, fed as chunk embeddings.

Runs on a tiny random-weight decoder built on the spot (no downloads), so the reply is
noise; what it shows is the mechanics: what is held, what is fed, and the checkpoint.

    python examples/compress_anywhere.py
"""

from __future__ import annotations

import asyncio
import tempfile

from refrag_agent import Generation, RefragModel, SamplingParams, TiktokenTokenizer, TokenEvent
from refrag_agent.model.tiny import random_decoder
from refrag_agent.template import REFRAG_TEMPLATE as T
from refrag_agent.timeline import SegmentKind

DOCUMENT = (
    "Leave policy. Employees accrue two days of leave per month. Up to five days of unused "
    "leave can be carried over into the next year; the rest lapses on 31 March."
)


async def main() -> None:
    tokenizer = TiktokenTokenizer.byte_level()
    decoder = random_decoder("llama", vocab_size=tokenizer.vocab_size)
    model = RefragModel.create(tokenizer=tokenizer, decoder=decoder)

    chunks = model.chunk(DOCUMENT)
    vectors = model.encode(chunks)  # computed once, on write; store and reuse them
    expand = {i for i, c in enumerate(chunks) if "five" in c.text}  # keep the key fact verbatim
    plan = model.plan(
        [
            T.render(SegmentKind.SYSTEM, "Answer from the handbook.")
            + T.header(SegmentKind.DOCUMENT),
            (chunks, vectors, expand),  # the document sits mid-prompt, mostly compressed
            T.end + T.question("How many days carry over?"),
        ]
    )
    print(
        f"tokens held {plan.n_tokens_held}, positions fed {plan.n_positions}, "
        f"chunks compressed {plan.n_compressed}, expanded {plan.n_expanded}"
    )

    async for item in model.stream(plan, SamplingParams(max_new_tokens=12)):
        if isinstance(item, TokenEvent):
            print(repr(item.text), end=" ", flush=True)
        elif isinstance(item, Generation):
            print(f"\nTTFT {1e3 * item.ttft_s:.1f} ms, {item.tokens_per_s:.0f} tokens/s")

    with tempfile.TemporaryDirectory() as directory:
        model.save(directory)
        again = RefragModel.load(directory, encoder=model.encoder)
        same = again.generate([plan])[0].text == model.generate([plan])[0].text
        print(f"checkpoint round trip gives the same greedy output: {same}")


if __name__ == "__main__":
    asyncio.run(main())
