"""A stage started from a model directory (``--init-from``) continues that model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from refrag_agent.errors import InvalidInput
from refrag_agent.training import get_preset, run_train, train


def test_a_stage_starts_from_the_given_model(
    chain: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, summary = chain
    again = train(
        get_preset("smoke"),
        stages=["sft"],
        resume=False,
        out_dir=tmp_path / "more",
        max_steps=1,
        progress=False,
        init_from=out / "sft" / "model",
    )
    # The same held-out batches, read by the model the chain's sft left: the same loss.
    assert again["sft"]["fixed_loss_before"] == pytest.approx(
        summary["sft"]["fixed_loss_after"], abs=1e-4
    )


def test_init_from_needs_one_stage_and_a_model_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="needs one stage"):
        run_train(preset="smoke", stage=None, resume=False, out_dir=tmp_path, init_from=tmp_path)
    with pytest.raises(InvalidInput, match="not a model directory"):
        run_train(preset="smoke", stage="sft", resume=False, out_dir=tmp_path, init_from=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written by a call that fails
