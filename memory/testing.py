"""Test doubles for users' own tests: a deterministic, dependency-free encoder."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEncoder:
    """Hashes words and character trigrams into ``dim`` signed buckets, then L2-normalises.

    Texts that share words get similar vectors, so vector search behaves sensibly in tests;
    the same text always gives the same vector. Change ``version`` to simulate a new
    encoder (a different fingerprint and different vectors).
    """

    def __init__(self, dim: int = 32, *, version: int = 1) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.dim = dim
        self.version = version
        self.fingerprint = f"hash-encoder:v{version}:d{dim}"
        self.calls = 0
        self.texts_encoded = 0

    def _features(self, text: str) -> list[str]:
        words = [w.lower() for w in _WORD.findall(text)]
        grams = [text[i : i + 3] for i in range(max(len(text) - 2, 0))]
        return [f"w:{w}" for w in words] * 2 + [f"g:{g}" for g in grams] or ["empty"]

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        for feature in self._features(text):
            digest = hashlib.blake2b(
                f"{self.version}|{feature}".encode("utf-8", "surrogatepass"), digest_size=8
            ).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dim
            vec[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vec))
        if norm == 0.0:
            vec[0] = 1.0
            return vec
        return vec / norm

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        self.calls += 1
        self.texts_encoded += len(texts)
        if not texts:
            return torch.zeros((0, self.dim), dtype=torch.float32)
        return torch.from_numpy(np.stack([self._vector(t) for t in texts]))  # (n, dim)
