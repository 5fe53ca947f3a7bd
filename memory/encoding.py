"""What the store needs from an encoder, and how embeddings are checked on the way in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from refrag_agent.errors import InvalidInput

if TYPE_CHECKING:  # torch is imported only where tensors are made (import stays light)
    import torch

FloatArray = npt.NDArray[np.float32]


@runtime_checkable
class EmbeddingFunction(Protocol):
    """A chunk encoder: text in, one float32 vector of width ``dim`` per text out.

    ``fingerprint`` names the encoder's weights and settings; two encoders with the same
    fingerprint must give the same vector for the same text, because the store reuses
    embeddings keyed on (content hash, fingerprint).
    """

    @property
    def fingerprint(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


@dataclass
class NoEncoder:
    """The encoder of a store opened read-only: the stored width, no weights to encode with."""

    dim: int
    fingerprint: str = "none"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        raise InvalidInput(
            "this memory store was opened read-only, without an encoder",
            fix="open it with MemoryStore.open(path, encoder=...) to embed text",
        )


def as_embeddings(value: Any, *, n: int, dim: int, what: str = "embeddings") -> FloatArray:
    """Check and convert embeddings given by a caller or an encoder to float32 (n, dim)."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        array = value.detach().cpu().float().numpy()
    else:
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"{what} are not numeric", type=type(value).__name__) from e
    if array.shape != (n, dim):
        raise InvalidInput(
            f"{what} have the wrong shape", expected=(n, dim), actual=tuple(array.shape)
        )
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise InvalidInput(f"{what} contain NaN or infinite values", rows=bad)
    return np.ascontiguousarray(array, dtype=np.float32)
