"""Request builders shared by the serve tests."""

from __future__ import annotations

from typing import Any

from refrag_agent.engines.wire import tensor_to_wire
from refrag_agent.model.refrag import RefragModel

NAME = "tiny"
URL = "/v1/chat/completions"
FACTS = (
    "My locker code is 4821. The meeting moved to Thursday at noon, room 12B. "
    "Order 7731 shipped on Monday; the tracking number is ZX-991-AQ."
)


def chat(content: Any, **fields: Any) -> dict[str, Any]:
    """A chat request with one user message; greedy unless told otherwise."""
    body: dict[str, Any] = {
        "model": NAME,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 8,
        "temperature": 0,
    }
    body.update(fields)
    return body


def chunks_part(model: RefragModel, text: str = FACTS, *, tokens: bool = True) -> dict[str, Any]:
    """A ``refrag_chunks`` content part: ``text``'s chunk embeddings (and token ids)."""
    chunks = model.chunk(text)
    part: dict[str, Any] = {
        "type": "refrag_chunks",
        "embeddings": tensor_to_wire(model.encode(chunks)),
    }
    if tokens:
        part["token_ids"] = [list(c.token_ids) for c in chunks]
    return part
