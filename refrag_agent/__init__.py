"""refrag-agent: long agent memory fed to a local decoder as compressed chunk embeddings.

The public API is what ``__all__`` lists. Names that need torch are imported on first
use, so ``import refrag_agent`` (and reading configs and errors) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from refrag_agent.budget import Budget
from refrag_agent.errors import (
    BudgetError,
    DecoderUnavailable,
    InvalidInput,
    ModelError,
    RefragError,
    RefragFailure,
    ScopeError,
    StoreError,
)
from refrag_agent.model.config import EncoderConfig, ProjectorConfig, RefragConfig
from refrag_agent.timeline import Chunk, Scope, Segment, SegmentKind

if TYPE_CHECKING:
    from refrag_agent.agent import Agent, Session
    from refrag_agent.engines import RemoteEngine
    from refrag_agent.model.assembly import (
        CompressedChunk,
        ExpandedChunk,
        PlacementPlan,
        TokenSpan,
    )
    from refrag_agent.model.encoder import ChunkEncoder
    from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
    from refrag_agent.model.refrag import RefragModel, load_checkpoint, save_checkpoint
    from refrag_agent.model.tokenizer import (
        HFTokenizer,
        TiktokenTokenizer,
        Tokenizer,
        load_tokenizer,
    )
    from refrag_agent.plan import ContextPlan
    from refrag_agent.reply import Reply, ReplyDone, TextDelta, Usage
    from refrag_agent.tools import tool

__version__ = "0.1.0"

_LAZY = {
    "Agent": "refrag_agent.agent",
    "ContextPlan": "refrag_agent.plan",
    "Reply": "refrag_agent.reply",
    "ReplyDone": "refrag_agent.reply",
    "Session": "refrag_agent.agent",
    "TextDelta": "refrag_agent.reply",
    "Usage": "refrag_agent.reply",
    "tool": "refrag_agent.tools",
    "ChunkEncoder": "refrag_agent.model.encoder",
    "CompressedChunk": "refrag_agent.model.assembly",
    "ExpandedChunk": "refrag_agent.model.assembly",
    "Generation": "refrag_agent.model.generation",
    "HFTokenizer": "refrag_agent.model.tokenizer",
    "PlacementPlan": "refrag_agent.model.assembly",
    "RefragModel": "refrag_agent.model.refrag",
    "RemoteEngine": "refrag_agent.engines",
    "SamplingParams": "refrag_agent.model.generation",
    "TiktokenTokenizer": "refrag_agent.model.tokenizer",
    "TokenEvent": "refrag_agent.model.generation",
    "TokenSpan": "refrag_agent.model.assembly",
    "Tokenizer": "refrag_agent.model.tokenizer",
    "load_checkpoint": "refrag_agent.model.refrag",
    "load_tokenizer": "refrag_agent.model.tokenizer",
    "save_checkpoint": "refrag_agent.model.refrag",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refrag_agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Agent",
    "Budget",
    "BudgetError",
    "Chunk",
    "ChunkEncoder",
    "CompressedChunk",
    "ContextPlan",
    "DecoderUnavailable",
    "EncoderConfig",
    "ExpandedChunk",
    "Generation",
    "HFTokenizer",
    "InvalidInput",
    "ModelError",
    "PlacementPlan",
    "ProjectorConfig",
    "RefragConfig",
    "RefragError",
    "RefragFailure",
    "RefragModel",
    "RemoteEngine",
    "Reply",
    "ReplyDone",
    "SamplingParams",
    "Scope",
    "ScopeError",
    "Segment",
    "SegmentKind",
    "Session",
    "StoreError",
    "TextDelta",
    "TiktokenTokenizer",
    "TokenEvent",
    "TokenSpan",
    "Tokenizer",
    "Usage",
    "__version__",
    "load_checkpoint",
    "load_tokenizer",
    "save_checkpoint",
    "tool",
]
