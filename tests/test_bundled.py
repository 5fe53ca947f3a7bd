"""The bundled models: they ship with the package, load, and answer from memory.

The embedded default (``bundled/smol``) is SmolLM2-135M-Instruct with the adapter,
projector and recipe this project trained; ``bundled/tiny`` is the 4.3M model trained
from scratch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from refrag_agent import Agent, Budget
from refrag_agent.bench.evaluation import QA_SEED_BASE, QA_SIZE
from refrag_agent.engines import BUNDLED_MODEL, TINY_MODEL, default_model
from refrag_agent.errors import ModelError
from refrag_agent.model.base_decoder import SMOLLM2, base_fingerprint
from refrag_agent.model.config import RefragConfig
from refrag_agent.model.refrag import RefragModel
from refrag_agent.training.dialogues import load_handwritten
from refrag_agent.training.tasks import TaskExample, make_example

MAX_BUNDLE_BYTES = 30 * 2**20


@pytest.mark.parametrize(("bundle", "preset"), [(BUNDLED_MODEL, "smol"), (TINY_MODEL, "tiny")])
def test_bundle_is_small_and_describes_how_it_was_made(bundle: Path, preset: str) -> None:
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size <= MAX_BUNDLE_BYTES
    recipe = json.loads((bundle / "recipe.json").read_text())
    assert recipe["name"] == preset and recipe["k"] == 16
    manifest = json.loads((bundle / "data_manifest.json").read_text())
    assert len(manifest["heldout"]["sha256"]) == 64 and manifest["heldout"]["files"]
    evaluation = json.loads((bundle / "eval.json").read_text())
    assert evaluation["benchmark"] == "quality" and evaluation["memory_qa"]["rows"]


def test_default_model_is_smollm2_with_its_adapter() -> None:
    model = default_model()
    # Its GRPO policy lost to query similarity at every budget (eval_policies.json): not
    # shipped, so sessions expand by similarity.
    assert model.policy is None
    assert model.config.base == SMOLLM2.name and model.template.name == "chatml"
    assert model.k == 16 and model.shape.max_positions == 8192
    assert not (BUNDLED_MODEL / "decoder").exists()  # the base is never shipped


def test_the_shipped_weights_are_tied_to_the_base_by_its_fingerprint(tmp_path: Path) -> None:
    recorded = RefragConfig.read(BUNDLED_MODEL).fingerprints["decoder"]
    assert recorded["digest"] == base_fingerprint(SMOLLM2).digest
    # The same bundle recorded against other base weights refuses to load, naming them.
    bundle = shutil.copytree(BUNDLED_MODEL, tmp_path / "bundle")
    data = json.loads((bundle / "refrag.json").read_text())
    tensors = data["fingerprints"]["decoder"]["tensors"]
    name = sorted(tensors)[0]
    shape, dtype, _ = tensors[name].split("|")
    tensors[name] = f"{shape}|{dtype}|{'0' * 24}"  # same tensor, other values
    (bundle / "refrag.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="decoder differs") as caught:
        RefragModel.load(bundle)
    assert any(name in line for line in caught.value.context["differs"])


async def _ask(agent: Agent, task: TaskExample, session: str, budget: Budget) -> str:
    chat = agent.session(tenant="t", session=session, budget=budget)
    for seg in task.segments:
        if seg.kind == "document":
            await chat.add_document(seg.text, source="notes.md")
        elif seg.kind == "tool_output":
            await chat.add_tool_output("lookup", seg.text)
        else:
            await chat.add_turn(seg.kind, seg.text)
    reply = await chat.respond(task.question, max_new_tokens=16)
    return reply.text.strip()


async def test_default_model_answers_handwritten_questions(tmp_path: Path) -> None:
    # Conversations written by hand (never generated, never trained on), through the Agent,
    # every chunk expanded (short conversations fit the window as tokens). How it answers
    # from compressed chunks is measured by `bench quality` (eval.json), not asserted here.
    tasks = [t for t in load_handwritten() if t.task != "unanswerable"][:4]
    async with Agent.open(model=None, memory=tmp_path / "memory") as agent:
        answers = [await _ask(agent, t, f"s{i}", Budget(p=1.0)) for i, t in enumerate(tasks)]
    right = [t.answer.lower() in a.lower() for t, a in zip(tasks, answers, strict=True)]
    assert sum(right) >= 3, list(zip(answers, [t.answer for t in tasks], strict=True))


async def test_tiny_model_answers_heldout_template_questions(tmp_path: Path) -> None:
    # Held-out seeds (no training stage draws seeds this high), 10% of chunks expanded by
    # the tiny model's learned policy.
    answered = []
    async with Agent.open(model=TINY_MODEL, memory=tmp_path / "memory") as agent:
        for i in range(4):
            task = make_example("memory_qa", QA_SEED_BASE + 10_000 + i, size=QA_SIZE)
            answered.append(await _ask(agent, task, f"s{i}", Budget(p=0.1)) == task.answer)
    assert sum(answered) >= 3, answered
