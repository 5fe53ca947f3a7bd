"""The counterfactual's value swap, the compress-only-the-answer layout, and the prose."""

from __future__ import annotations

import gzip
from pathlib import Path

from refrag_agent.bench.counterfactual import AllBut, changed_value, value_shape
from refrag_agent.bench.evaluation import Evaluator, natural_heldout
from refrag_agent.bench.manpages import manpage_windows, roff_to_text
from refrag_agent.engines import TINY_MODEL, resolve_model
from refrag_agent.model.assembly import CompressedChunk, ExpandedChunk
from refrag_agent.training.stages import answer_chunks
from refrag_agent.training.tasks import NOT_MENTIONED


def test_the_changed_value_replaces_the_value_inside_the_answer_chunk() -> None:
    ev = Evaluator(resolve_model(TINY_MODEL))
    tok = ev.model.tokenizer
    tasks = [t for t in natural_heldout(40) if t.answer != NOT_MENTIONED]
    swapped = 0
    for task in tasks:
        changed = changed_value(task, seed=task.seed)
        if changed is None:
            continue
        swapped += 1
        old, new = task.references[0], changed.references[0]
        assert new != old and value_shape(new) == value_shape(old)
        assert changed.answer == task.answer.replace(old, new)
        context = " ".join(s.text for s in changed.segments)
        assert old not in context and new in context
        # Only the segments that held the value changed, and the same chunks hold it now.
        for before, after in zip(task.segments, changed.segments, strict=True):
            assert (before.text == after.text) == (old not in before.text)
        # Laid out as the counterfactual lays it out, the new value is only in compressed
        # chunks, and it is there.
        compressed = answer_chunks(changed, tok, k=16)
        example, _ = ev.qa_layout(changed, AllBut(frozenset(compressed)))
        expanded = [p for p in example.prefix if isinstance(p, ExpandedChunk)]
        assert all(new not in tok.decode(list(p.token_ids)) for p in expanded)
        rows = [p.row for p in example.prefix if isinstance(p, CompressedChunk)]
        assert len(rows) == len(compressed)
        assert new in "".join(example.chunk_texts[r] for r in rows)
    assert swapped >= 0.8 * len(tasks)


def test_all_but_expands_every_chunk_except_the_answers() -> None:
    expand = AllBut(frozenset({2, 5}))
    assert [i for i in range(7) if i in expand] == [0, 1, 3, 4, 6]


def test_value_shape_keeps_digits_capitals_and_layout() -> None:
    assert value_shape("KDV392018") == "AAA999999"
    assert value_shape("14 Mar") == value_shape("23 Jun") == "99 Aa"
    assert value_shape("Valparaíso") == value_shape("Hobart") == "Aa"


def test_manual_pages_become_plain_prose_windows(tmp_path: Path) -> None:
    page = (
        '.\\" a comment\n.TH LS 1\n.SH DESCRIPTION\nList \\fBinformation\\fR about the '
        'FILEs\\-each of them.\n.PP\n.B "--all"\ndo not ignore entries.\n'
    )
    assert roff_to_text(page) == (
        "DESCRIPTION List information about the FILEs-each of them. --all do not ignore entries."
    )
    folder = tmp_path / "man1"
    folder.mkdir()
    for name in ("ls.1.gz", "ls-extra.1.gz", "cat.1.gz", "python3.1.gz"):
        (folder / name).write_bytes(gzip.compress((page * 20).encode()))
    tok = resolve_model(TINY_MODEL).tokenizer
    prose = manpage_windows(tok, n=2, context_tokens=32, target_tokens=8, root=tmp_path)
    # One page per command family (ls, cat), Python's pages skipped.
    assert prose.files == 2 and len(prose.windows) == 2
    assert all(len(w.context) == 32 and len(w.target) == 8 for w in prose.windows)
