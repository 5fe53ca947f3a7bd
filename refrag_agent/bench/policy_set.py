"""Every expansion policy of the ablation, applied to held-out text windows and tasks.

The perplexity baselines score chunks with one decoder pass over the uncompressed context
(cached per example, as the ablation asks each example at several budgets); the oracle
knows which chunks hold a task's answer, so it exists for memory QA only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from refrag_agent.bench.evaluation import Evaluator, TextWindow, select
from refrag_agent.engines import resolve_model
from refrag_agent.model.refrag import RefragModel
from refrag_agent.policies import OraclePolicy, make_policy
from refrag_agent.training.stages import EVERY_CHUNK
from refrag_agent.training.tasks import TaskExample

POLICY_ORDER = (
    "none",
    "random",
    "recency",
    "similarity",
    "perplexity-desc",
    "perplexity-asc",
    "learned",
    "oracle",
)


def load_bench_model(model: RefragModel | str | Path | None) -> tuple[RefragModel, str]:
    """The model a quality benchmark measures, and the name it records."""
    if isinstance(model, RefragModel):
        name = "in-memory model"
    else:
        name = "embedded default" if model is None else str(model)
    return resolve_model(model), name


class PolicySet:
    """Builds each named policy for one example and returns the chunks it expands."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.ev = evaluator
        self.has_learned = evaluator.model.policy is not None
        self._scores: dict[tuple[str, int], torch.Tensor] = {}
        self.scorer_seconds: list[float] = []  # one full-context decoder pass per example

    def names(self, *, with_oracle: bool = True) -> tuple[str, ...]:
        """The policies this model can run (``learned`` needs a trained policy network)."""
        skip = {
            n for n, keep in (("learned", self.has_learned), ("oracle", with_oracle)) if not keep
        }
        return tuple(n for n in POLICY_ORDER if n not in skip)

    def _policy(self, name: str, scores: Any, oracle: set[int] | None) -> Any:
        if name == "oracle":
            assert oracle is not None
            return OraclePolicy(oracle)
        return make_policy(name, scorer=scores, network=self.ev.model.policy)  # type: ignore[arg-type]

    def _perplexity(self, key: tuple[str, int], compute: Any) -> Any:
        def scorer(_inputs: Any) -> torch.Tensor:
            if key not in self._scores:
                started = time.perf_counter()
                self._scores[key] = compute()
                self.scorer_seconds.append(time.perf_counter() - started)
            return self._scores[key]

        return scorer

    def select_text(self, name: str, window: TextWindow, p: float, *, k: int = 16) -> set[int]:
        inputs = self.ev.text_policy_input(window, k)
        scorer = self._perplexity(
            ("text", hash(window)),
            lambda: self.ev.chunk_perplexity(
                self.ev.text_example(window, "compressed", k=k, expand=EVERY_CHUNK)
            ),
        )
        return select(self._policy(name, scorer, None), inputs, p)

    def select_qa(self, name: str, task: TaskExample, p: float) -> set[int]:
        _, inputs = self.ev.qa_layout(task, ())
        scorer = self._perplexity(
            ("qa", task.seed),
            lambda: self.ev.chunk_perplexity(self.ev.qa_layout(task, EVERY_CHUNK)[0]),
        )
        oracle = self.ev.oracle_chunks(task) if name == "oracle" else None
        return select(self._policy(name, scorer, oracle), inputs, p)
