"""The package as pip installs it (not the source tree) loads its bundled model and answers.

This is what a user meets: a wheel-style install whose package data must hold the whole
bundled checkpoint, and whose fingerprints must hold under the libraries installed today.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "refrag_agent", "memory", "policies", "tools")

# One conversation written by hand (held out from training), asked of the embedded default
# (SmolLM2 with the shipped adapter, its base converted into the user's cache), its short
# context fed as tokens.
SCRIPT = """
import asyncio, json, sys
import refrag_agent
from refrag_agent import Agent, Budget
from refrag_agent.training.dialogues import load_handwritten

async def main():
    task = [t for t in load_handwritten() if t.task == "memory_qa"][0]
    async with Agent.open(model=None, memory=sys.argv[1]) as agent:
        chat = agent.session(tenant="t", session="s", budget=Budget(p=1.0))
        for seg in task.segments:
            if seg.kind == "document":
                await chat.add_document(seg.text, source="notes.md")
            elif seg.kind == "tool_output":
                await chat.add_tool_output("lookup", seg.text)
            else:
                await chat.add_turn(seg.kind, seg.text)
        reply = await chat.respond(task.question, max_new_tokens=16)
    print(json.dumps({"file": refrag_agent.__file__, "answer": reply.text.strip(),
                      "expected": task.answer}))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-editable install of this project into a folder of its own (no dependencies)."""
    work = tmp_path_factory.mktemp("installed")
    source = work / "source"
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(src, source / name)
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return target


def test_installed_package_answers_from_its_bundled_model(installed: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "memory")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).is_relative_to(installed)  # not the source tree
    assert result["expected"].lower() in result["answer"].lower()
