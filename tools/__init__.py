"""Tools an agent can call: registry, call protocol and the tool loop (``refrag_agent.tools``).

::

    @tool
    async def lookup_order(order_id: int) -> dict[str, str]:
        '''Find an order by its number.'''

    result = await run_tool_loop(step, [lookup_order], on_call=append_call,
                                 on_output=append_output, max_tool_steps=4)
    result.text, result.finish_reason, result.exchanges

The call format the decoder writes is in :mod:`refrag_agent.tools.protocol` and
``docs/tools.md``.
"""

from .loop import (
    DEFAULT_MAX_TOOL_STEPS,
    DEFAULT_TIMEOUT_S,
    FinishReason,
    ToolCallEvent,
    ToolEvent,
    ToolExchange,
    ToolLoopDone,
    ToolLoopResult,
    ToolOutput,
    ToolOutputEvent,
    execute_call,
    iter_tool_loop,
    run_tool_loop,
)
from .protocol import (
    CALL_START,
    END,
    OUTPUT_START,
    AnyCall,
    ErrorType,
    MalformedCall,
    MalformedReason,
    NoCall,
    ParsedOutput,
    ToolCall,
    error_text,
    format_call,
    format_output,
    new_call_id,
    output_text,
    pairing_metadata,
    parse_output,
    text_before_call,
    tools_preamble,
    tools_prompt,
)
from .registry import Tool, Toolbox, ToolLike, as_tool, tool
from .testing import ScriptedDecoder

# Plain sorted() order, as the public-API tests check (ruff's isort order differs).
__all__ = [  # noqa: RUF022
    "AnyCall",
    "CALL_START",
    "DEFAULT_MAX_TOOL_STEPS",
    "DEFAULT_TIMEOUT_S",
    "END",
    "ErrorType",
    "FinishReason",
    "MalformedCall",
    "MalformedReason",
    "NoCall",
    "OUTPUT_START",
    "ParsedOutput",
    "ScriptedDecoder",
    "Tool",
    "ToolCall",
    "ToolCallEvent",
    "ToolEvent",
    "ToolExchange",
    "ToolLike",
    "ToolLoopDone",
    "ToolLoopResult",
    "ToolOutput",
    "ToolOutputEvent",
    "Toolbox",
    "as_tool",
    "error_text",
    "execute_call",
    "format_call",
    "format_output",
    "iter_tool_loop",
    "new_call_id",
    "output_text",
    "pairing_metadata",
    "parse_output",
    "run_tool_loop",
    "text_before_call",
    "tool",
    "tools_preamble",
    "tools_prompt",
]
