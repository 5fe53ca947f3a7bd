"""RAG over a folder of text files: each file becomes a document segment.

    python examples/rag_folder.py [FOLDER]

Without FOLDER it indexes a few modules' docs from the Python standard library, which is
present on every machine.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from refrag_agent import Agent, Budget


def sample_folder(target: Path) -> Path:
    import json
    import textwrap
    import zipfile

    for module in (json, textwrap, zipfile):
        (target / f"{module.__name__}.txt").write_text(module.__doc__ or module.__name__)
    return target


async def main(folder: Path) -> None:
    files = sorted(p for p in folder.iterdir() if p.suffix in {".txt", ".md"})
    with tempfile.TemporaryDirectory() as memory:
        async with Agent.open(model=None, memory=memory) as agent:
            chat = agent.session(tenant="docs", session="rag")
            for path in files:
                await chat.add_document(path.read_text(errors="replace"), source=path.name)
            hits = await agent.store.search(chat.scope, "serialize objects to JSON", limit=3)
            for hit in hits:
                print(f"hit {hit.score:.3f} {hit.text[:60]!r}")
            reply = await chat.respond("How do I serialize objects to JSON?", budget=Budget(p=0.1))
            print(
                f"{len(files)} files, {reply.plan.tokens_held} tokens held, "
                f"{reply.plan.positions_fed} positions fed"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            asyncio.run(main(sample_folder(Path(scratch))))
