"""ScriptedEngine: an engine that answers from a script, for tests of code built on an agent.

::

    engine = ScriptedEngine(model, [
        ScriptedEngine.call("lookup_order", order_id=42),
        "Your order ships tomorrow.",
    ])
    async with Agent.open(engine=engine, memory=tmp_path) as agent:
        chat = agent.session(tenant="acme", session="s")
        reply = await chat.respond("Where is order 42?", tools=[lookup_order])
    assert reply.text == "Your order ships tomorrow."
    assert "Where is order 42?" in engine.prompts[0]

Memory, layout, the policy and the tool loop stay real; only decoding is scripted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from refrag_agent.errors import DecoderUnavailable
from refrag_agent.model.assembly import CompressedChunk, PlacementPlan
from refrag_agent.model.generation import Generation, SamplingParams, TokenEvent
from refrag_agent.model.refrag import RefragModel
from refrag_agent.template import REFRAG_TEMPLATE
from refrag_agent.tools.protocol import CALL_START, END
from refrag_agent.tools.testing import ScriptedDecoder, ScriptItem


class ScriptedEngine:
    """Plays a script back, one item per ``generate`` or ``stream`` call, and records the calls.

    ``model`` is what the agent plans with (its decoder never runs here). Script items are
    those of :class:`~refrag_agent.tools.ScriptedDecoder`: a text, an exception raised at
    its turn, or a function of the prompt; running past the end raises
    :class:`~refrag_agent.errors.InvalidInput`. Every call appends to ``plans`` (the
    :class:`PlacementPlan`), ``params`` (the :class:`SamplingParams`) and ``prompts`` (the
    plan as the decoder reads it: its tokens as text, each compressed chunk as
    ``[compressed: N tokens]``).
    """

    call = staticmethod(ScriptedDecoder.call)

    def __init__(self, model: RefragModel, outputs: Iterable[ScriptItem]) -> None:
        self.model = model
        self.plans: list[PlacementPlan] = []
        self.params: list[SamplingParams] = []
        self.prompts: list[str] = []
        self._decoder = ScriptedDecoder(outputs)
        self._closed = False

    @property
    def remaining(self) -> int:
        """How many script items are left."""
        return self._decoder.remaining

    async def generate(self, plan: PlacementPlan, params: SamplingParams) -> Generation:
        """The next scripted output, as the whole answer; a scripted call
        (:meth:`call`) is written in the model's own call format."""
        prompt = self._record(plan, params)
        return self._generation(plan, self._in_model_format(await self._decoder(prompt)))

    async def stream(
        self, plan: PlacementPlan, params: SamplingParams
    ) -> AsyncIterator[TokenEvent | Generation]:
        """The next scripted output in pieces (words with their leading space), then the
        :class:`Generation`."""
        prompt = self._record(plan, params)
        pieces: list[str] = []
        async for piece in self._decoder.stream(prompt):
            pieces.append(piece)
            yield TokenEvent(row=0, token_id=-1, text=piece, elapsed_s=0.0)
        yield self._generation(plan, "".join(pieces))

    async def aclose(self) -> None:
        """Later calls raise :class:`~refrag_agent.errors.DecoderUnavailable`."""
        self._closed = True

    def _record(self, plan: PlacementPlan, params: SamplingParams) -> str:
        if self._closed:
            raise DecoderUnavailable("the engine is closed", fix="open a new ScriptedEngine")
        prompt = self._text(plan)
        self.plans.append(plan)
        self.params.append(params)
        self.prompts.append(prompt)
        return prompt

    def _text(self, plan: PlacementPlan) -> str:
        """Runs of tokens decoded together (a character may span placements)."""
        parts: list[str] = []
        run: list[int] = []
        for placement in plan.placements:
            if isinstance(placement, CompressedChunk):
                parts.append(self.model.tokenizer.decode(run))
                parts.append(f"[compressed: {placement.n_tokens} tokens]")
                run = []
            else:
                run.extend(placement.token_ids)
        parts.append(self.model.tokenizer.decode(run))
        return "".join(parts)

    def _in_model_format(self, text: str) -> str:
        # ScriptedDecoder.call writes the project's own markers; a model with a chat
        # template of its own (ChatML) calls with its markers.
        template = self.model.template
        if template is REFRAG_TEMPLATE or CALL_START not in text:
            return text
        return text.replace(CALL_START, template.tool_call).replace(END, template.answer_end)

    def _generation(self, plan: PlacementPlan, text: str) -> Generation:
        return Generation(
            token_ids=self.model.tokenizer.encode(text, allow_special=True),
            text=text,
            finish_reason="stop",
            prompt_positions=plan.n_positions,
        )
