"""An interrupted and resumed stage ends in the same state as an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from refrag_agent.errors import InvalidInput
from refrag_agent.training import get_preset, train

STAGE = "reconstruct"


def _state(out: Path) -> tuple[dict[str, torch.Tensor], dict, int]:  # type: ignore[type-arg]
    ckpt = out / STAGE / "checkpoint"
    model = load_file(str(ckpt / "model.safetensors"))
    optim = torch.load(ckpt / "optimizer.bin", weights_only=False)
    step = json.loads((ckpt / "state.json").read_text())["step"]
    return model, optim, step


def test_resume_gives_the_same_state(tmp_path: Path) -> None:
    preset = get_preset("smoke")
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(preset, stages=[STAGE], resume=False, out_dir=full, max_steps=6, progress=False)
    train(preset, stages=[STAGE], resume=False, out_dir=cut, max_steps=3, progress=False)
    with pytest.raises(InvalidInput):  # an interrupted run is never silently restarted
        train(preset, stages=[STAGE], resume=False, out_dir=cut, max_steps=3, progress=False)
    train(preset, stages=[STAGE], resume=True, out_dir=cut, max_steps=3, progress=False)

    m_full, o_full, s_full = _state(full)
    m_cut, o_cut, s_cut = _state(cut)
    assert s_full == s_cut == 6
    assert m_full.keys() == m_cut.keys()
    for key in m_full:
        torch.testing.assert_close(m_full[key], m_cut[key], rtol=0, atol=1e-6)
    for pid, st in o_full["state"].items():
        assert st["step"] == o_cut["state"][pid]["step"]
        torch.testing.assert_close(st["exp_avg"], o_cut["state"][pid]["exp_avg"], rtol=0,
                                   atol=1e-6)  # fmt: skip
    sched_full = torch.load(full / STAGE / "checkpoint" / "custom_checkpoint_0.pkl",
                            weights_only=False)  # fmt: skip
    sched_cut = torch.load(cut / STAGE / "checkpoint" / "custom_checkpoint_0.pkl",
                           weights_only=False)  # fmt: skip
    assert sched_full["last_epoch"] == sched_cut["last_epoch"] == 6
    # The resumed run's metrics continue where the first part stopped, without duplicates.
    steps = [json.loads(x)["step"] for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(6))
