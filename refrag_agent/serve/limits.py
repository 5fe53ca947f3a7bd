"""What the server accepts and how much it runs at once; every limit is checked before work.

Importable without torch, so the CLI can validate its options cheaply.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import asdict, dataclass
from typing import Any

from refrag_agent.errors import InvalidInput

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, kw_only=True)
class ServeLimits:
    """Request limits (each answered with a 4xx JSON error) and batching sizes.

    ``max_body_bytes`` fits ``max_chunks`` embedding rows of width 384 (the bundled
    encoder's) with 16 token ids each: 32 MiB of base64 and about 2 MiB of ids. A client
    gets ``max_receive_s`` to send a request's head (its connection is closed after that),
    and again to send its body (408). ``max_json_depth`` bounds the body's nesting.
    ``max_request_s`` runs from the request's arrival to its last token, queue wait
    included. ``max_batch`` rows decode together; ``max_queue`` more may wait for a row;
    beyond that the server answers 429. ``max_batch_positions`` caps the padded positions
    (rows x longest prompt) prefilled in one decoder call, which bounds peak memory.
    """

    max_body_bytes: int = 40 * 2**20
    max_receive_s: float = 60.0
    max_json_depth: int = 64
    max_messages: int = 256
    max_tokens: int = 1024
    max_request_s: float = 300.0
    max_chunks: int = 16_384
    max_stop: int = 4
    max_batch: int = 16
    max_queue: int = 64
    max_batch_positions: int = 65_536

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name == "max_queue" and value == 0:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise InvalidInput(f"{name} must be a positive finite number", value=repr(value))

    def describe(self) -> dict[str, Any]:
        """The limits as JSON, for ``GET /v1/refrag/model`` and the docs."""
        return asdict(self)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only ("localhost", 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
