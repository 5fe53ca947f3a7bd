"""``refrag-agent bench policies``: the expansion-policy ablation on held-out data.

For each expansion budget p and each policy (none, random, recency, similarity,
perplexity-desc, perplexity-asc, learned, and an oracle where the answer's chunks are
known), with bounds measured on the same examples: ``full`` (everything as tokens),
``none`` (no expansion: every chunk compressed) and ``no_context``:

- text: next-paragraph log-perplexity of held-out prose (lower is better);
- memory QA: exact match on the held-out QA set, generated and hand-written questions
  together (higher is better).

Policies that pick the same chunks for a question share one generated answer, so the cost
grows with the distinct choices, not with the number of rows.

Targets (issue 5): the learned policy at least matches every heuristic at every p, and at
p = 0.1 closes at least 80% of the gap between no expansion and full expansion on memory QA.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from refrag_agent.bench.common import median, run_header, write_json
from refrag_agent.bench.evaluation import (
    QA_SIZE,
    QA_TASKS,
    Evaluator,
    ProseSource,
    QaSet,
    default_prose,
    default_qa_set,
    model_summary,
    no_context,
    qa_sets,
)
from refrag_agent.bench.manpages import prose_windows
from refrag_agent.bench.policy_set import PolicySet, load_bench_model
from refrag_agent.bench.quality import CONTEXT_TOKENS, TARGET_TOKENS
from refrag_agent.bench.summary import verdicts_of
from refrag_agent.training.dialogues import DIALOGUE_TASKS
from refrag_agent.training.stages import EVERY_CHUNK

PS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)


def _text(
    ev: Evaluator, policies: PolicySet, n: int, ps: tuple[float, ...], prose: ProseSource
) -> dict[str, Any]:
    source = prose_windows(
        ev.model, prose, n=n, context_tokens=CONTEXT_TOKENS, target_tokens=TARGET_TOKENS, seed=1
    )
    windows = source.windows
    bounds = {
        "full": ev.log_ppl([ev.text_example(w, "full") for w in windows]),
        "none": ev.log_ppl([ev.text_example(w, "compressed") for w in windows]),
        "no_context": ev.log_ppl([ev.text_example(w, "none") for w in windows]),
    }
    rows = []
    # Policies that pick the same chunks in every window score the same (at p = 0, nothing;
    # at p = 1, everything): one decoder pass for them all.
    seen: dict[tuple[frozenset[int], ...], float] = {}
    jobs = [(name, p) for p in ps for name in policies.names(with_oracle=False)]
    for name, p in tqdm(jobs, desc="policies: text", leave=False):
        chosen = [frozenset(policies.select_text(name, w, p)) for w in windows]
        key = tuple(chosen)
        if key not in seen:
            examples = [
                ev.text_example(w, "compressed", expand=c)
                for w, c in zip(windows, chosen, strict=True)
            ]
            seen[key] = round(ev.log_ppl(examples), 4)
        rows.append({"policy": name, "p": p, "value": seen[key]})
    return {
        "metric": "log_ppl",
        "lower_is_better": True,
        "n_examples": n,
        **source.record(),
        "bounds": {k: round(v, 4) for k, v in bounds.items()},
        "rows": rows,
    }


def _qa(
    ev: Evaluator, policies: PolicySet, n: int, ps: tuple[float, ...], size: int, qa_set: QaSet
) -> dict[str, Any]:
    # As many hand-written questions as generated: every row asks each question again.
    sets = qa_sets(qa_set, n, size=size, n_handwritten=n)
    tasks = [t for part in sets.values() for t in part]
    total = len(tasks)

    def em(expansions: list[Any]) -> float:
        return ev.exact_match_rate(tasks, expansions)

    bounds = {
        "full": em([EVERY_CHUNK] * total),
        "none": em([()] * total),
        "no_context": ev.exact_match_rate([no_context(t) for t in tasks], [()] * total),
    }
    rows = []
    jobs = [(name, p) for p in ps for name in policies.names()]
    for name, p in tqdm(jobs, desc="policies: memory QA", leave=False):
        rows.append(
            {"policy": name, "p": p, "value": em([policies.select_qa(name, t, p) for t in tasks])}
        )
    return {
        "metric": "exact_match",
        "lower_is_better": False,
        "n_examples": total,
        "qa_set": qa_set,
        "sets": {k: len(v) for k, v in sets.items()},
        "tasks": list(QA_TASKS) if qa_set == "templates" else list(DIALOGUE_TASKS),
        "bounds": bounds,
        "rows": rows,
    }


def run_policies_bench(
    *,
    quick: bool,
    json_path: Path | None,
    model: Any = None,
    n_examples: int | None = None,
    qa_size: int = QA_SIZE,
    ps: tuple[float, ...] | None = None,
    qa_set: QaSet | None = None,
    prose: ProseSource | None = None,
) -> dict[str, Any]:
    """Measure, print a table, write JSON to ``json_path``; return the payload.

    ``n_examples`` sizes the text windows, the generated (or templated) questions and the
    share of the hand-written ones asked. ``qa_set`` and ``prose`` default to what
    suits the model's template.
    """
    loaded, model_name = load_bench_model(model)
    ev = Evaluator(loaded)
    policies = PolicySet(ev)
    chosen = tuple(ps) if ps is not None else PS
    qa_set = qa_set or default_qa_set(loaded)
    prose = prose or default_prose(loaded)
    natural = qa_set == "natural"
    n_text = n_examples or (4 if quick else 8 if natural else 96)
    n_qa = n_examples or (4 if quick else 8 if natural else 90)
    started = time.perf_counter()
    text = _text(ev, policies, n_text, chosen, prose)
    text["seconds"] = round(time.perf_counter() - started, 1)
    qa = _qa(ev, policies, n_qa, chosen, qa_size, qa_set)
    qa["seconds"] = round(time.perf_counter() - started - text["seconds"], 1)
    result: dict[str, Any] = {
        **run_header("policies"),
        "quick": quick,
        "model": model_summary(loaded, model_name),
        "ps": list(chosen),
        "policies": list(policies.names()),
        "text": text,
        "memory_qa": qa,
        "perplexity_scorer_ms_p50": round(1e3 * median(policies.scorer_seconds), 2)
        if policies.scorer_seconds
        else None,
    }
    result["verdicts"] = verdicts_of(result)
    print(format_policies(result))
    write_json(json_path, result)
    return result


def format_policies(result: dict[str, Any]) -> str:
    lines = []
    for part in ("text", "memory_qa"):
        data = result[part]
        seconds = f", {data['seconds']} s" if "seconds" in data else ""
        lines.append(
            f"{part} ({data['metric']}, n={data['n_examples']}{seconds}): full "
            f"{data['bounds']['full']}, none {data['bounds']['none']}"
        )
        names = list(dict.fromkeys(r["policy"] for r in data["rows"]))
        at = {(r["policy"], r["p"]): r["value"] for r in data["rows"]}
        short = [n.replace("perplexity", "ppl") for n in names]
        lines.append("  p      " + " ".join(f"{n:>10}" for n in short))
        for p in result["ps"]:
            cells = " ".join(f"{at.get((n, p), float('nan')):>10.3f}" for n in names)
            lines.append(f"  {p:<6} {cells}")
    if result["perplexity_scorer_ms_p50"] is not None:
        lines.append(
            "perplexity baselines cost one full-context decoder pass per example: "
            f"p50 {result['perplexity_scorer_ms_p50']} ms"
        )
    lines += [f"{v['status']}: {v['target']}. Ours: {v['detail']}" for v in result["verdicts"]]
    return "\n".join(lines)
