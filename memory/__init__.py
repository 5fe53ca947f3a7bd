"""Long-term memory: the SQL timeline and the LanceDB chunk store (``refrag_agent.memory``).

::

    async with MemoryStore.open("memory/", encoder=encoder) as store:
        await store.create_scope(scope)
        result = await store.append(segment, chunks)
        batch = await store.fetch(scope, [segment.id])
        hits = await store.search(scope, "what did the user ask about invoices?")
"""

from .encoding import EmbeddingFunction
from .records import AppendResult, ChunkBatch, MaintenanceReport, SearchHit, StoreStats
from .search import rrf
from .settings import StoreSettings
from .store import MemoryStore, open_store
from .testing import HashEncoder

__all__ = [
    "AppendResult",
    "ChunkBatch",
    "EmbeddingFunction",
    "HashEncoder",
    "MaintenanceReport",
    "MemoryStore",
    "SearchHit",
    "StoreSettings",
    "StoreStats",
    "open_store",
    "rrf",
]
