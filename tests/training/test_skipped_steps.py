"""A step whose gradient is not finite is skipped; the weights stay finite, the run goes on.

(The smol-gpu recipe's first bf16 SFT run turned every weight into NaN at one step.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from refrag_agent.training import get_preset, train
from refrag_agent.training.stages import RefragLM, TrainBatch


def test_a_non_finite_gradient_skips_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forward = RefragLM.forward
    calls = {"n": 0}

    def poisoned(self: RefragLM, batch: TrainBatch) -> torch.Tensor:
        loss = forward(self, batch)
        calls["n"] += 1
        # Calls 1-4 are the held-out loss before training; call 6 is the second step.
        return loss * float("nan") if calls["n"] == 6 else loss

    monkeypatch.setattr(RefragLM, "forward", poisoned)
    out = tmp_path / "run"
    summary = train(
        get_preset("smoke"),
        stages=["reconstruct"],
        resume=False,
        out_dir=out,
        max_steps=4,
        progress=False,
    )
    assert summary["reconstruct"]["skipped_steps"] == 1
    assert summary["reconstruct"]["steps_run"] == 4
    weights = load_file(str(out / "reconstruct" / "checkpoint" / "model.safetensors"))
    assert all(bool(torch.isfinite(w).all()) for w in weights.values())
