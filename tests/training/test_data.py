"""Data built offline: corpus split, BPE round trip, deterministic task generators."""

from __future__ import annotations

import json

import pytest

from refrag_agent.model.tokenizer import TiktokenTokenizer
from refrag_agent.template import CHATML_TEMPLATE, REFRAG_TEMPLATE, ChatTemplate
from refrag_agent.training.bpe import train_bpe, train_tokenizer
from refrag_agent.training.data import CorpusConfig, build_corpus, docstrings, is_heldout
from refrag_agent.training.stages import layout_task
from refrag_agent.training.tasks import NOT_MENTIONED, TASKS, make_example, mixed_example, score

SMALL = CorpusConfig(max_files=16, max_chars_per_file=3000, heldout_percent=20)


def test_corpus_is_deterministic_and_split_by_path_hash() -> None:
    a, b = build_corpus(SMALL), build_corpus(SMALL)
    assert a.manifest == b.manifest
    assert a.manifest["train"]["sha256"] != a.manifest["heldout"]["sha256"]
    for doc in a.heldout:
        assert is_heldout(doc.name, SMALL.heldout_percent)
    for doc in a.train:
        assert not is_heldout(doc.name, SMALL.heldout_percent)
    assert {d.name for d in a.train}.isdisjoint(d.name for d in a.heldout)
    other = build_corpus(CorpusConfig(max_files=16, max_chars_per_file=3000, heldout_percent=20,
                                      seed=1))  # fmt: skip
    assert other.manifest["train"]["sha256"] != a.manifest["train"]["sha256"]


def test_docstrings_extracts_in_order() -> None:
    src = '"""Module."""\n\ndef f():\n    """Function f."""\n\nclass C:\n    """Class C."""\n'
    assert docstrings(src) == "Module.\n\nFunction f.\n\nClass C."


def test_bpe_round_trips_and_compresses() -> None:
    texts = [d.text for d in build_corpus(SMALL).train]
    tok = train_tokenizer(texts, n_merges=300)
    assert tok.vocab_size > 256 + 100
    for text in ["def f(x):\n    return x + 1  # añadir é 日本語 🙂", texts[0][:2000], ""]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
    sample = texts[0][:2000]
    assert len(tok.encode(sample)) < 0.6 * len(sample.encode("utf-8"))
    assert train_bpe(texts, n_merges=300) == train_bpe(texts, n_merges=300)


@pytest.mark.parametrize("task", TASKS)
def test_tasks_are_deterministic_for_a_seed(task: str) -> None:
    a = make_example(task, 7, size=12)  # type: ignore[arg-type]
    b = make_example(task, 7, size=12)  # type: ignore[arg-type]
    c = make_example(task, 8, size=12)  # type: ignore[arg-type]
    assert a == b
    assert a != c
    assert a.segments and a.question and a.answer
    assert score(a, a.answer) == 1.0


def test_task_contents() -> None:
    for seed in range(20):
        ex = make_example("unanswerable", seed, size=8)
        assert ex.answer == NOT_MENTIONED
        ex = make_example("fact_update", seed, size=8)
        context = " ".join(s.text for s in ex.segments)
        assert ex.answer in context
        ex = make_example("niah_multikey", seed, size=20)
        assert ex.answer in ex.segments[0].text
        ex = make_example("variable_tracking", seed, size=10)
        assert all(f"VAR {v} " in ex.segments[0].text for v in ex.references)
        ex = make_example("tool_call", seed, size=4)
        assert ex.calls_tool  # the answer is the call's JSON; the layout adds the marker
        call = json.loads(ex.answer)
        assert set(call) == {"name", "arguments"}
        assert call["name"] in ex.segments[0].text
    assert {mixed_example(s).task for s in range(200)} == set(TASKS)


@pytest.mark.parametrize("template", [REFRAG_TEMPLATE, CHATML_TEMPLATE])
def test_a_tool_call_target_starts_with_the_templates_own_marker(template: ChatTemplate) -> None:
    tokenizer = TiktokenTokenizer.byte_level()
    task = make_example("tool_call", 3, size=4)
    example, _ = layout_task(task, tokenizer, k=16, template=template)
    target = tokenizer.decode(example.target)
    assert target == f"{template.tool_call}{task.answer}{template.answer_end}"
