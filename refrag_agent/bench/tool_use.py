"""Tool use on held-out tools: does the model call when it should, and answer after?

The ``heldout`` family of :mod:`~refrag_agent.training.tool_dialogues` (tools, argument
names and questions no training example has), laid out as the SDK lays out a tool loop's
steps (the tools preamble first; all context as tokens), answered greedily and read with
the tools protocol's own parser:

- ``call``: the question needs a tool. Right when the output is one call of the right tool
  with the right arguments (values compared as text, as the tool's validation coerces).
- ``answer``: the call and its output are in the context. Right when the output is no call
  and exactly the asked field's value.
- ``memory``: tools are offered but the answer is in the conversation. Right when the
  output is no call and the exact answer.
"""

from __future__ import annotations

import json
from typing import Any

from refrag_agent.bench.evaluation import Evaluator, exact_match
from refrag_agent.tools.protocol import NoCall, ToolCall, parse_output
from refrag_agent.training.stages import EVERY_CHUNK
from refrag_agent.training.tasks import TaskExample
from refrag_agent.training.tool_dialogues import TOOL_SHAPES, offered_tools, tool_example

TOOL_SEED_BASE = 1 << 45  # a seed space of its own, above every other held-out draw


def tool_tasks(n: int, *, size: int) -> dict[str, list[TaskExample]]:
    """``n`` held-out dialogues of each shape, at seeds no training draws."""
    return {
        shape: [
            tool_example(TOOL_SEED_BASE + i, size=size, family="heldout", shape=shape)
            for i in range(n)
        ]
        for shape in TOOL_SHAPES
    }


def _arguments(values: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items()}


def judge(task: TaskExample, output: str, ev: Evaluator) -> tuple[bool, bool]:
    """(right, called): whether ``output`` is right for ``task``, and whether it calls."""
    parsed = parse_output(output, tools=offered_tools(task.tools), template=ev.model.template)
    called = not isinstance(parsed, NoCall)
    if task.calls_tool:
        wanted = json.loads(task.answer)
        right = (
            isinstance(parsed, ToolCall)
            and parsed.name == wanted["name"]
            and _arguments(parsed.arguments) == _arguments(wanted["arguments"])
        )
        return right, called
    return (isinstance(parsed, NoCall) and exact_match(task, parsed.text)), called


def tool_use(ev: Evaluator, n: int, *, size: int) -> dict[str, Any]:
    """Per shape: the share right, the share that called a tool, and a few outputs."""
    out: dict[str, Any] = {"n_per_shape": n, "family": "heldout", "context": "all tokens"}
    for shape, tasks in tool_tasks(n, size=size).items():
        answers = ev.task_answers(tasks, [EVERY_CHUNK] * len(tasks))
        judged = [judge(t, a, ev) for t, a in zip(tasks, answers, strict=True)]
        out[shape] = {
            "right": round(sum(r for r, _ in judged) / len(judged), 4),
            "called": round(sum(c for _, c in judged) / len(judged), 4),
            "examples": [
                {"question": t.question, "expected": t.answer, "output": a}
                for t, a in list(zip(tasks, answers, strict=True))[:3]
            ],
        }
    return out


def format_tool_use(result: dict[str, Any]) -> str:
    parts = [
        f"{shape} right {result[shape]['right']:.3f} (called {result[shape]['called']:.3f})"
        for shape in TOOL_SHAPES
        if shape in result
    ]
    return f"tool use, held-out tools (n={result['n_per_shape']} each): " + "; ".join(parts)
