"""Turn a finished training run into one self-describing model directory.

``refrag-agent export RUN_DIR DEST`` writes the last stage's model with the trained policy
attached (a normal checkpoint: ``RefragModel.load(DEST, load_policy=load_policy)``) and,
beside it, what made it:

    recipe.json            the preset, every stage's settings
    data_manifest.json     corpus files and sha256s, the split rule, tokenizer and seeds
    training_summary.json  per stage: steps, held-out loss before and after, seconds

This is how the bundled models in ``refrag_agent/bundled`` (smol, tiny) were made.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from refrag_agent.errors import InvalidInput
from refrag_agent.model.refrag import RefragModel
from refrag_agent.policies import load_policy, save_policy
from refrag_agent.training.build import DATA_DIR, MODEL_DIR
from refrag_agent.training.presets import STAGES

RUN_FILES = {
    "preset.json": "recipe.json",
    f"{DATA_DIR}/manifest.json": "data_manifest.json",
    "summary.json": "training_summary.json",
}


def export_model(run_dir: str | Path, dest: str | Path) -> Path:
    """Export ``run_dir``'s final model (and its policy, if the rl stage ran) to ``dest``."""
    run, out = Path(run_dir), Path(dest)
    last = next(
        (run / s / MODEL_DIR for s in reversed(STAGES) if (run / s / MODEL_DIR).is_dir()), None
    )
    if last is None:
        raise InvalidInput("no stage of this run saved a model", run_dir=str(run))
    model = RefragModel.load(last, merge_adapter=False)  # its adapter saved apart again
    policy_dir = run / "rl" / "policy"
    if policy_dir.is_dir():
        model.policy = load_policy(policy_dir).eval()
    if out.exists():
        shutil.rmtree(out)
    model.save(out, save_policy=save_policy)
    for src, name in RUN_FILES.items():
        if (run / src).is_file():
            shutil.copyfile(run / src, out / name)
    return out
