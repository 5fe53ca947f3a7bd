"""Stages sized by wall-clock time: steps scaled from probed step times, kept on resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from refrag_agent.errors import InvalidInput
from refrag_agent.training import get_preset, train
from refrag_agent.training.curriculum import geometric_curriculum
from refrag_agent.training.presets import StageConfig, with_stage
from refrag_agent.training.timing import chunk_counts, fit_to_seconds, predicted_seconds

CURRICULUM = geometric_curriculum(max_chunks=8, n_stages=4, first_steps=10, last_steps=40)
TIMES = {1: 0.1, 2: 0.15, 4: 0.3, 8: 0.7}


def test_a_curriculum_is_scaled_to_the_budget_keeping_its_shape() -> None:
    config = StageConfig("reconstruct", curriculum=CURRICULUM, seconds=120.0)
    fitted = fit_to_seconds(config, TIMES)
    assert fitted.seconds is None
    assert chunk_counts(fitted) == [1, 2, 4, 8]
    # Rounding each curriculum stage's steps costs at most one of its slowest steps.
    slack = len(CURRICULUM.stages) * max(TIMES.values())
    assert abs(predicted_seconds(fitted, TIMES) - 120.0) <= slack
    before = [s.steps / CURRICULUM.total_steps for s in CURRICULUM.stages]
    after = [s.steps / fitted.total_steps for s in fitted.curriculum.stages]  # type: ignore[union-attr]
    assert after == pytest.approx(before, abs=0.01)
    # Half the time, about half the steps.
    half = fit_to_seconds(replace(config, seconds=60.0), TIMES)
    assert half.total_steps == pytest.approx(fitted.total_steps / 2, abs=len(CURRICULUM.stages))


def test_a_stage_without_a_curriculum_gets_budget_over_step_time() -> None:
    config = StageConfig("cpt", steps=5, seconds=30.0)
    assert fit_to_seconds(config, {1: 0.25}).steps == 120


def test_bad_budgets_and_missing_times_are_refused() -> None:
    with pytest.raises(InvalidInput):
        StageConfig("rl", seconds=10.0)
    with pytest.raises(InvalidInput):
        StageConfig("cpt", seconds=0.0)
    with pytest.raises(InvalidInput):
        fit_to_seconds(StageConfig("reconstruct", curriculum=CURRICULUM, seconds=5.0), {1: 0.1})
    with pytest.raises(InvalidInput):
        fit_to_seconds(StageConfig("cpt"), {1: 0.1})


def test_the_loop_fits_a_stage_to_its_seconds_and_resumes_the_same_schedule(
    tmp_path: Path,
) -> None:
    smoke = get_preset("smoke")
    preset = with_stage(smoke, replace(smoke.stage("reconstruct"), seconds=3.0))
    out = tmp_path / "run"
    first = train(
        preset, stages=["reconstruct"], resume=False, out_dir=out, max_steps=2, progress=False
    )
    recorded = json.loads((out / "reconstruct" / "fitted.json").read_text())
    times = {int(n): t for n, t in recorded.items()}
    assert sorted(times) == chunk_counts(smoke.stage("reconstruct"))
    expected = fit_to_seconds(preset.stage("reconstruct"), times).total_steps
    assert first["reconstruct"]["total_steps"] == expected
    # The resumed run takes the recorded times (changed here to tell), it does not probe.
    halved = {n: t / 2 for n, t in times.items()}
    (out / "reconstruct" / "fitted.json").write_text(json.dumps(halved))
    resumed = train(
        preset, stages=["reconstruct"], resume=True, out_dir=out, max_steps=1, progress=False
    )
    assert (
        resumed["reconstruct"]["total_steps"]
        == fit_to_seconds(preset.stage("reconstruct"), halved).total_steps
    )
    assert resumed["reconstruct"]["steps"] == 3
