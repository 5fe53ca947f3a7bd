"""``refrag-agent bench quality``: the paper's table 1, on held-out data, for one model.

- Text: log-perplexity of the next ``target_tokens`` tokens given ``context_tokens`` of
  held-out text, with no context, the full context as tokens, REFRAG with k = 8, 16 and 32
  (every chunk compressed), and k = 16 with the learned policy expanding p = 0.1.
- Memory QA: exact match with the full context as tokens, with no context, and k = 16 with
  each policy at p = 0.1, over every held-out set together and each apart (see
  :mod:`refrag_agent.bench.evaluation`).
- Whether compressed chunks are read (:mod:`refrag_agent.bench.counterfactual`): the
  answer's chunk compressed with the value in it changed, and single-chunk reconstruction
  against a shuffled-vector control.

Text is held-out prose: manual pages for a pretrained decoder (never in the training
corpus), the corpus's held-out files for the tiny one; "gap closed" is
(none - REFRAG k=16) / (none - full).

The bundled model was trained at k = 16 only; its k = 8 and k = 32 rows read chunk sizes its
projector never saw, where the paper trains one model per k.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from refrag_agent.bench.common import run_header, write_json
from refrag_agent.bench.counterfactual import answer_chunk_texts, counterfactual, reconstruction
from refrag_agent.bench.evaluation import (
    QA_SIZE,
    QA_TASKS,
    Evaluator,
    ProseSource,
    QaSet,
    TextWindow,
    default_prose,
    default_qa_set,
    model_summary,
    natural_heldout,
    no_context,
    qa_sets,
)
from refrag_agent.bench.manpages import prose_windows
from refrag_agent.bench.policy_set import PolicySet, load_bench_model
from refrag_agent.bench.summary import verdicts_of
from refrag_agent.bench.tool_use import format_tool_use, tool_use
from refrag_agent.training.dialogues import DIALOGUE_TASKS
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


def _qa_rows(
    ev: Evaluator, policies: PolicySet, sets: dict[str, list[TaskExample]]
) -> list[dict[str, Any]]:
    """One row per setting: exact match over every set together, and per set."""
    tasks = [t for part in sets.values() for t in part]

    def row(name: str, policy: str | None, p: float | None, hits: list[bool]) -> dict[str, Any]:
        by_set, at = {}, 0
        for part, examples in sets.items():
            by_set[part] = _rate(hits[at : at + len(examples)])
            at += len(examples)
        return {
            "name": name,
            "policy": policy,
            "p": p,
            "exact_match": _rate(hits),
            "by_set": by_set,
        }

    rows = [
        row("full context", None, None, ev.exact_matches(tasks, [EVERY_CHUNK] * len(tasks))),
        row(
            "no context",
            None,
            None,
            ev.exact_matches([no_context(t) for t in tasks], [()] * len(tasks)),
        ),
    ]
    for name in tqdm(policies.names(), desc="quality: policies", leave=False):
        chosen = [policies.select_qa(name, t, P) for t in tasks]
        rows.append(row(f"k=16 {name} p={P}", name, P, ev.exact_matches(tasks, chosen)))
    return rows


def _rate(hits: list[bool]) -> float:
    return round(sum(hits) / len(hits), 4) if hits else 0.0


def run_quality_bench(
    *,
    quick: bool,
    json_path: Path | None,
    model: Any = None,
    n_examples: int | None = None,
    qa_size: int = QA_SIZE,
    qa_set: QaSet | None = None,
    prose: ProseSource | None = None,
) -> dict[str, Any]:
    """Measure, print a table, write JSON to ``json_path``; return the payload.

    ``n_examples`` sizes the text windows and the generated (or templated) questions;
    the hand-written questions are always all asked. ``qa_set`` and ``prose`` default to
    what suits the model's template (:func:`default_qa_set`, :func:`default_prose`).
    """
    loaded, model_name = load_bench_model(model)
    ev = Evaluator(loaded)
    qa_set = qa_set or default_qa_set(loaded)
    prose = prose or default_prose(loaded)
    n_text = n_examples or (16 if quick else 32)
    n_qa = n_examples or (8 if quick else 24)
    policies = PolicySet(ev)
    started = time.perf_counter()
    text_source = prose_windows(
        loaded, prose, n=n_text, context_tokens=CONTEXT_TOKENS, target_tokens=TARGET_TOKENS
    )
    text = _text_rows(ev, policies, text_source.windows)
    text_s = time.perf_counter() - started
    sets = qa_sets(qa_set, n_qa, size=qa_size)
    qa = _qa_rows(ev, policies, sets)
    qa_s = time.perf_counter() - started - text_s
    heldout = natural_heldout(n_qa, size=qa_size)
    probe = {
        "counterfactual": counterfactual(ev, heldout),
        **(
            {"tool_use": tool_use(ev, max(2, n_qa // 2), size=qa_size)}
            if qa_set == "natural"
            else {}
        ),
        "reconstruction": reconstruction(ev, answer_chunk_texts(ev, heldout)),
    }
    probe_s = time.perf_counter() - started - text_s - qa_s
    by_name = {r["name"]: r["log_ppl"] for r in text}
    none, full = by_name["no context"], by_name["full context"]
    result: dict[str, Any] = {
        **run_header("quality"),
        "quick": quick,
        "model": model_summary(loaded, model_name),
        "perplexity": {
            "context_tokens": CONTEXT_TOKENS,
            "target_tokens": TARGET_TOKENS,
            "n_examples": n_text,
            **text_source.record(),
            "rows": text,
            "gap_closed": round((none - by_name["REFRAG k=16"]) / (none - full), 4)
            if none != full
            else None,
        },
        "memory_qa": {
            "qa_set": qa_set,
            "n_examples": sum(len(v) for v in sets.values()),
            "sets": {k: len(v) for k, v in sets.items()},
            "qa_size": qa_size,
            "chunks_per_conversation": {
                k: round(sum(ev.qa_layout(t, ())[1].n_chunks for t in v) / len(v), 1)
                for k, v in sets.items()
                if v
            },
            "tasks": list(QA_TASKS) if qa_set == "templates" else list(DIALOGUE_TASKS),
            "rows": qa,
        },
        **probe,
        "seconds": {
            "perplexity": round(text_s, 1),
            "memory_qa": round(qa_s, 1),
            "counterfactual_reconstruction_tools": round(probe_s, 1),
        },
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
    if pp.get("gap_closed") is not None:
        lines.append(f"  {'gap closed by REFRAG k=16':<28} {pp['gap_closed']:.1%}")
    qa = result["memory_qa"]
    parts = qa.get("sets", {})
    chunks = qa.get("chunks_per_conversation", {})
    lines.append(
        f"memory QA exact match (n={qa['n_examples']}; all"
        + "".join(
            f", {k} n={v}" + (f" ~{chunks[k]:g} chunks" if k in chunks else "")
            for k, v in parts.items()
        )
        + "):"
    )
    for r in qa["rows"]:
        cells = "".join(f" {r['by_set'][k]:>8.3f}" for k in parts)
        lines.append(f"  {r['name']:<28} {r['exact_match']:>5.3f}{cells}")
    cf = result.get("counterfactual", {})
    if cf.get("n_examples"):
        lines.append(
            f"answer chunk compressed, the rest as tokens (n={cf['n_examples']}): exact match "
            f"{cf['exact_match']:.3f}; value changed in that chunk: follows the new value "
            f"{cf['follows_changed_value']:.3f}, keeps the old {cf['keeps_old_value']:.3f}, "
            f"mentions the new {cf['mentions_changed_value']:.3f}"
        )
    rec = result.get("reconstruction", {})
    if "own" in rec:
        own, other = rec["own"], rec["shuffled"]
        lines.append(
            f"single-chunk reconstruction (n={rec['n_chunks']}): tokens {own['token_accuracy']:.3f}"
            f" (shuffled vector {other['token_accuracy']:.3f}), digits "
            f"{_maybe(own['digit_accuracy'])} (shuffled {_maybe(other['digit_accuracy'])})"
        )
    if "tool_use" in result:
        lines.append(format_tool_use(result["tool_use"]))
    if "seconds" in result:
        lines.append("seconds: " + ", ".join(f"{k} {v}" for k, v in result["seconds"].items()))
    lines += [f"{v['status']}: {v['target']}. Ours: {v['detail']}" for v in result["verdicts"]]
    return "\n".join(lines)


def _maybe(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
