"""The engine protocol: what an agent needs from whatever decodes its placement plans."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from refrag_agent.model.assembly import PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel


@runtime_checkable
class Engine(Protocol):
    """Decodes placement plans: :class:`LocalEngine`, :class:`RemoteEngine`,
    :class:`VLLMEngine` or :class:`ScriptedEngine`.

    ``model`` is what an agent plans with (tokenizer, chunker, encoder, policy); it need
    not decode itself (a remote engine's decoder has no weights here).
    """

    @property
    def model(self) -> RefragModel: ...

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation:
        """Decode ``plan`` and return the whole answer."""
        ...

    def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]:
        """Token events as they are decoded, then the :class:`Generation`."""
        ...

    async def aclose(self) -> None:
        """Release what the engine holds; later calls raise ``DecoderUnavailable``."""
        ...
