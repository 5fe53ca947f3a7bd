"""A bounded in-process cache of embeddings keyed by (tenant, encoder, content hash)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import numpy.typing as npt

CacheKey = tuple[str, str, str]


class EmbeddingCache:
    """Least-recently-used embeddings; the persistent cache is the chunk table itself."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[CacheKey, npt.NDArray[np.float32]] = OrderedDict()

    def get(self, key: CacheKey) -> npt.NDArray[np.float32] | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: CacheKey, value: npt.NDArray[np.float32]) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
