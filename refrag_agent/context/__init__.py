"""The context builder: gather, lay out, build features, select under the budget, place.

Pure functions over segments, chunks and embeddings (no store, no model), shared by the
SDK, the server, training and the benchmarks, so every prompt is built by the same code.
Stored segments become its input through ``context.stored``, which needs the store and
is imported from there (training and the pure layout code never load the store).
"""

from refrag_agent.context.build import (
    Choice,
    ChunkSlot,
    ContextSegment,
    Draft,
    Layout,
    chunk_features,
    draft,
    place,
    policy_input,
    select,
    span,
)
from refrag_agent.context.order import (
    PLACEMENTS,
    check_placement,
    order_segments,
    pinned_ids,
    with_pairs,
)
from refrag_agent.context.window import Gathered, capacity, fits, gather, positions, within_room

__all__ = [
    "PLACEMENTS",
    "Choice",
    "ChunkSlot",
    "ContextSegment",
    "Draft",
    "Gathered",
    "Layout",
    "capacity",
    "check_placement",
    "chunk_features",
    "draft",
    "fits",
    "gather",
    "order_segments",
    "pinned_ids",
    "place",
    "policy_input",
    "positions",
    "select",
    "span",
    "with_pairs",
    "within_room",
]
