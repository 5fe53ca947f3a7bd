"""``refrag-agent bench policies``: the expansion-policy ablation on held-out data.

For each expansion budget p and each policy (none, random, recency, similarity,
perplexity-desc, perplexity-asc, learned, and an oracle where the answer's chunks are
known), with bounds measured on the same examples: ``full`` (everything as tokens),
``none`` (no expansion: every chunk compressed) and ``no_context``:

- text: next-paragraph log-perplexity (lower is better);
- memory QA: exact match (higher is better).

Targets (issue 5): the learned policy at least matches every heuristic at every p, and at
p = 0.1 closes at least 80% of the gap between no expansion and full expansion on memory QA.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from refrag_agent.bench.common import median, run_header, write_json
from refrag_agent.bench.evaluation import (
    QA_SIZE,
    QA_TASKS,
    Evaluator,
    heldout_windows,
    model_summary,
    no_context,
    qa_examples,
)
from refrag_agent.bench.policy_set import PolicySet, load_bench_model
from refrag_agent.bench.quality import CONTEXT_TOKENS, TARGET_TOKENS
from refrag_agent.bench.summary import verdicts_of
from refrag_agent.training.stages import EVERY_CHUNK

PS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)


def _text(ev: Evaluator, policies: PolicySet, n: int, ps: tuple[float, ...]) -> dict[str, Any]:
    windows = heldout_windows(
        ev.model, n=n, context_tokens=CONTEXT_TOKENS, target_tokens=TARGET_TOKENS, seed=1
    )
    bounds = {
        "full": ev.log_ppl([ev.text_example(w, "full") for w in windows]),
        "none": ev.log_ppl([ev.text_example(w, "compressed") for w in windows]),
        "no_context": ev.log_ppl([ev.text_example(w, "none") for w in windows]),
    }
    rows = []
    jobs = [(name, p) for p in ps for name in policies.names(with_oracle=False)]
    for name, p in tqdm(jobs, desc="policies: text", leave=False):
        examples = [
            ev.text_example(w, "compressed", expand=policies.select_text(name, w, p))
            for w in windows
        ]
        rows.append({"policy": name, "p": p, "value": round(ev.log_ppl(examples), 4)})
    return {
        "metric": "log_ppl",
        "lower_is_better": True,
        "n_examples": n,
        "bounds": {k: round(v, 4) for k, v in bounds.items()},
        "rows": rows,
    }


def _qa(
    ev: Evaluator, policies: PolicySet, n: int, ps: tuple[float, ...], size: int
) -> dict[str, Any]:
    tasks = qa_examples(n, size=size)

    def em(expansions: list[Any]) -> float:
        return ev.exact_match_rate(tasks, expansions)

    bounds = {
        "full": em([EVERY_CHUNK] * n),
        "none": em([()] * n),
        "no_context": ev.exact_match_rate([no_context(t) for t in tasks], [()] * n),
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
        "n_examples": n,
        "tasks": list(QA_TASKS),
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
) -> dict[str, Any]:
    """Measure, print a table, write JSON to ``json_path``; return the payload."""
    loaded, model_name = load_bench_model(model)
    ev = Evaluator(loaded)
    policies = PolicySet(ev)
    chosen = tuple(ps) if ps is not None else PS
    text = _text(ev, policies, n_examples or (24 if quick else 96), chosen)
    qa = _qa(ev, policies, n_examples or (24 if quick else 90), chosen, qa_size)
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
        lines.append(
            f"{part} ({data['metric']}, n={data['n_examples']}): full {data['bounds']['full']}, "
            f"none {data['bounds']['none']}"
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
