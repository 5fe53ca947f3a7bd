"""Test doubles for users' own tests: a decoder that plays back a script.

::

    decoder = ScriptedDecoder([
        ScriptedDecoder.call("lookup_order", order_id=42),
        "Your order ships tomorrow.",
    ])
    result = await run_tool_loop(decoder, [lookup_order])
    assert decoder.calls == 2

To script a whole agent's decoding, pass ``Agent.open`` a
:class:`~refrag_agent.engines.ScriptedEngine`: it plays the same script items.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeAlias

from refrag_agent.errors import InvalidInput

from .protocol import CALL_START, END

ScriptItem: TypeAlias = str | BaseException | Callable[[str | None], str]
"""One scripted output: a text, an exception to raise, or a function of the prompt."""


class ScriptedDecoder:
    """Returns scripted outputs in order and records the prompts it was given.

    Usable directly as the loop's ``step`` (``await decoder()``) or as a decoder that is
    handed a prompt (``await decoder(prompt)``). An exception in the script is raised
    at its turn (to test decoder failures); a callable is called with the prompt. Running
    past the end of the script raises :class:`InvalidInput`, naming how many outputs it had.
    """

    def __init__(self, outputs: Iterable[ScriptItem]) -> None:
        self.script: list[ScriptItem] = list(outputs)
        self.prompts: list[str | None] = []
        self.outputs: list[str] = []

    @property
    def calls(self) -> int:
        """How many outputs were asked for."""
        return len(self.prompts)

    @property
    def remaining(self) -> int:
        return len(self.script) - len(self.prompts)

    @staticmethod
    def call(name: str, /, **arguments: Any) -> str:
        """An output that calls ``name`` with ``arguments`` in the decoder's format."""
        body = json.dumps({"name": name, "arguments": arguments})
        return f"{CALL_START}{body}{END}"

    async def __call__(self, prompt: str | None = None) -> str:
        index = len(self.prompts)
        if index >= len(self.script):
            raise InvalidInput("the ScriptedDecoder ran out of outputs", scripted=len(self.script))
        self.prompts.append(prompt)
        item = self.script[index]
        if isinstance(item, BaseException):
            raise item
        text = item if isinstance(item, str) else item(prompt)
        self.outputs.append(text)
        return text

    async def stream(self, prompt: str | None = None) -> AsyncIterator[str]:
        """The next output in pieces (words with their leading space), like a streamed decode."""
        text = await self(prompt)
        start = 0
        for i in range(1, len(text) + 1):
            if i == len(text) or (text[i] == " " and text[i - 1] != " "):
                yield text[start:i]
                start = i
