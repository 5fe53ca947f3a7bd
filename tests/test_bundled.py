"""The bundled tiny model: it ships with the package, loads, and answers from memory."""

from __future__ import annotations

import json
from pathlib import Path

from refrag_agent import Agent, Budget
from refrag_agent.bench.evaluation import QA_SEED_BASE, QA_SIZE
from refrag_agent.engines import BUNDLED_MODEL, default_model
from refrag_agent.training.tasks import make_example

MAX_BUNDLE_BYTES = 30 * 2**20


def test_bundle_is_small_and_describes_how_it_was_made() -> None:
    size = sum(p.stat().st_size for p in BUNDLED_MODEL.rglob("*") if p.is_file())
    assert size <= MAX_BUNDLE_BYTES
    recipe = json.loads((BUNDLED_MODEL / "recipe.json").read_text())
    assert recipe["name"] == "tiny" and recipe["k"] == 16
    manifest = json.loads((BUNDLED_MODEL / "data_manifest.json").read_text())
    assert len(manifest["heldout"]["sha256"]) == 64 and manifest["heldout"]["files"]
    evaluation = json.loads((BUNDLED_MODEL / "eval.json").read_text())
    assert evaluation["benchmark"] == "quality" and evaluation["memory_qa"]["rows"]


def test_default_model_is_the_bundled_one_with_its_policy() -> None:
    model = default_model()
    assert model.policy is not None
    assert model.k == 16 and model.tokenizer.vocab_size > 256  # its own BPE, not bytes


async def test_bundled_model_answers_heldout_memory_questions(tmp_path: Path) -> None:
    # Held-out seeds (no training stage draws seeds this high), asked through the Agent
    # with 10% of chunks expanded by the bundled learned policy.
    answered = []
    async with Agent.open(model=None, memory=tmp_path / "memory") as agent:
        for i in range(4):
            task = make_example("memory_qa", QA_SEED_BASE + 10_000 + i, size=QA_SIZE)
            chat = agent.session(tenant="t", session=f"s{i}", budget=Budget(p=0.1))
            for seg in task.segments:
                if seg.kind == "document":
                    await chat.add_document(seg.text, source="notes.md")
                elif seg.kind == "tool_output":
                    await chat.add_tool_output("lookup", seg.text)
                else:
                    await chat.add_turn(seg.kind, seg.text)
            reply = await chat.respond(task.question, max_new_tokens=16)
            assert reply.plan.chunks_compressed > reply.plan.chunks_expanded
            answered.append(reply.text.strip() == task.answer)
    assert sum(answered) >= 3, answered
