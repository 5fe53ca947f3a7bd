"""``refrag-agent bench quality``: the paper's table 1, on held-out data, for one model.

- Text: log-perplexity of the next ``target_tokens`` tokens given ``context_tokens`` of
  held-out text, with no context, the full context as tokens, REFRAG with k = 8, 16 and 32
  (every chunk compressed), and k = 16 with the learned policy expanding p = 0.1.
- Memory QA: exact match with the full context as tokens, with no context, and k = 16 with
  each policy at p = 0.1 (see :mod:`refrag_agent.bench.evaluation`).

The bundled model was trained at k = 16 only; its k = 8 and k = 32 rows read chunk sizes its
projector never saw, where the paper trains one model per k.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from refrag_agent.bench.common import run_header, write_json
from refrag_agent.bench.evaluation import (
    QA_SIZE,
    QA_TASKS,
    Evaluator,
    TextWindow,
    heldout_windows,
    model_summary,
    no_context,
    qa_examples,
)
from refrag_agent.bench.policy_set import PolicySet, load_bench_model
from refrag_agent.bench.summary import verdicts_of
from refrag_agent.training.stages import EVERY_CHUNK
from refrag_agent.training.tasks import TaskExample

CONTEXT_TOKENS = 256
TARGET_TOKENS = 64
P = 0.1


def _text_rows(
    ev: Evaluator, policies: PolicySet, windows: list[TextWindow]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "name": "no context",
            "k": None,
            "p": None,
            "log_ppl": ev.log_ppl([ev.text_example(w, "none") for w in windows]),
        },
        {
            "name": "full context",
            "k": None,
            "p": None,
            "log_ppl": ev.log_ppl([ev.text_example(w, "full") for w in windows]),
        },
    ]
    for k in (8, 16, 32):
        examples = [ev.text_example(w, "compressed", k=k) for w in windows]
        rows.append({"name": f"REFRAG k={k}", "k": k, "p": 0.0, "log_ppl": ev.log_ppl(examples)})
    if policies.has_learned:
        chosen = [policies.select_text("learned", w, P) for w in windows]
        examples = [
            ev.text_example(w, "compressed", k=16, expand=c)
            for w, c in zip(windows, chosen, strict=True)
        ]
        rows.append(
            {"name": "REFRAG k=16 learned p=0.1", "k": 16, "p": P, "log_ppl": ev.log_ppl(examples)}
        )
    return [{**r, "log_ppl": round(r["log_ppl"], 4)} for r in rows]


def _qa_rows(ev: Evaluator, policies: PolicySet, tasks: list[TaskExample]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "name": "full context",
            "policy": None,
            "p": None,
            "exact_match": ev.exact_match_rate(tasks, [EVERY_CHUNK] * len(tasks)),
        },
        {
            "name": "no context",
            "policy": None,
            "p": None,
            "exact_match": ev.exact_match_rate([no_context(t) for t in tasks], [()] * len(tasks)),
        },
    ]
    for name in tqdm(policies.names(), desc="quality: policies", leave=False):
        chosen = [policies.select_qa(name, t, P) for t in tasks]
        rows.append(
            {
                "name": f"k=16 {name} p={P}",
                "policy": name,
                "p": P,
                "exact_match": ev.exact_match_rate(tasks, chosen),
            }
        )
    return rows


def run_quality_bench(
    *,
    quick: bool,
    json_path: Path | None,
    model: Any = None,
    n_examples: int | None = None,
    qa_size: int = QA_SIZE,
) -> dict[str, Any]:
    """Measure, print a table, write JSON to ``json_path``; return the payload."""
    loaded, model_name = load_bench_model(model)
    ev = Evaluator(loaded)
    n_text = n_examples or (48 if quick else 256)
    n_qa = n_examples or (30 if quick else 150)
    policies = PolicySet(ev)
    windows = heldout_windows(
        loaded, n=n_text, context_tokens=CONTEXT_TOKENS, target_tokens=TARGET_TOKENS
    )
    text = _text_rows(ev, policies, windows)
    qa = _qa_rows(ev, policies, qa_examples(n_qa, size=qa_size))
    result: dict[str, Any] = {
        **run_header("quality"),
        "quick": quick,
        "model": model_summary(loaded, model_name),
        "perplexity": {
            "context_tokens": CONTEXT_TOKENS,
            "target_tokens": TARGET_TOKENS,
            "n_examples": n_text,
            "rows": text,
        },
        "memory_qa": {"n_examples": n_qa, "tasks": list(QA_TASKS), "rows": qa},
    }
    result["verdicts"] = verdicts_of(result)
    print(format_quality(result))
    write_json(json_path, result)
    return result


def format_quality(result: dict[str, Any]) -> str:
    lines = [f"model {result['model']['name']} ({result['model']['params']:,} params)", ""]
    pp = result["perplexity"]
    lines.append(
        f"log-perplexity, next {pp['target_tokens']} tokens after {pp['context_tokens']} "
        f"(n={pp['n_examples']}):"
    )
    lines += [f"  {r['name']:<28} {r['log_ppl']:.3f}" for r in pp["rows"]]
    qa = result["memory_qa"]
    lines.append(f"memory QA exact match (n={qa['n_examples']}):")
    lines += [f"  {r['name']:<28} {r['exact_match']:.3f}" for r in qa["rows"]]
    lines += [f"{v['status']}: {v['target']}. Ours: {v['detail']}" for v in result["verdicts"]]
    return "\n".join(lines)
