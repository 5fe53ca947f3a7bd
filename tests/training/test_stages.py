"""Every stage runs on tiny random models, lowers its loss, and trains only what it should."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from refrag_agent.errors import InvalidInput
from refrag_agent.model.assembly import CompressedChunk, TokenSpan
from refrag_agent.model.refrag import RefragModel
from refrag_agent.training import get_preset, run_train, train
from refrag_agent.training.stages import IGNORE, Example, collate

Chain = tuple[Path, dict[str, Any]]


@pytest.mark.parametrize("stage", ["pretrain", "reconstruct", "cpt", "sft"])
def test_stage_lowers_loss_on_a_fixed_batch(chain: Chain, stage: str) -> None:
    out, summary = chain
    s = summary[stage]
    assert s["steps_run"] == s["total_steps"] > 0
    assert s["fixed_loss_after"] < s["fixed_loss_before"]
    assert (out / stage / "done.json").is_file()
    RefragModel.load(out / stage / "model")  # every stage leaves a loadable checkpoint


def test_rl_stage_runs_the_policy_trainer(chain: Chain) -> None:
    out, summary = chain
    s = summary["rl"]
    assert s["steps_run"] == 3
    assert math.isfinite(s["reward_first"]) and s["reward_first"] < 0
    assert (out / "rl" / "policy").is_dir()


def test_reconstruction_keeps_the_decoder_frozen(chain: Chain) -> None:
    out, _ = chain

    def weights(stage: str, name: str) -> dict[str, torch.Tensor]:
        path = out / stage / "model" / name
        return load_file(str(path / "model.safetensors" if path.is_dir() else path))

    before, after = weights("pretrain", "decoder"), weights("reconstruct", "decoder")
    assert all(torch.equal(before[k], after[k]) for k in before)
    p0, p1 = (
        weights("pretrain", "projector.safetensors"),
        weights("reconstruct", "projector.safetensors"),
    )
    assert all(not torch.equal(p0[k], p1[k]) for k in p0)  # every projector tensor moved
    cpt = weights("cpt", "decoder")
    assert any(not torch.equal(after[k], cpt[k]) for k in after)  # cpt trains the decoder


def test_metrics_log_and_summary(chain: Chain) -> None:
    out, summary = chain
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    stages = {r["stage"] for r in rows}
    assert {"pretrain", "reconstruct", "cpt", "sft"} <= stages
    for r in rows:
        assert {"step", "train/loss", "train/lr", "train/grad_norm"} <= set(r)
    recon = [r for r in rows if r["stage"] == "reconstruct"]
    assert [r["step"] for r in recon] == list(range(len(recon)))
    # The curriculum drove the chunk counts.
    sched = get_preset("smoke").stage("reconstruct").curriculum
    assert sched is not None
    assert [r["train/n_chunks"] for r in recon] == list(sched.schedule)
    saved = json.loads((out / "summary.json").read_text())
    assert set(saved) == set(summary)
    assert all(s["seconds_per_step"] > 0 for s in summary.values())
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert len(manifest["train"]["tokens_sha256"]) == 64 and manifest["seed"] == 0


def test_finished_stage_is_skipped_on_resume_and_refused_without(chain: Chain) -> None:
    out, _ = chain
    again = train(get_preset("smoke"), stages=["cpt"], resume=True, out_dir=out, progress=False)
    assert again["cpt"] == json.loads((out / "cpt" / "done.json").read_text())
    with pytest.raises(InvalidInput):
        run_train(preset="smoke", stage="cpt", resume=False, out_dir=out)
    with pytest.raises(InvalidInput):
        run_train(preset="smoke", stage="nope", resume=False, out_dir=out)


def test_collate_puts_labels_where_they_are_predicted(minilm: Any, byte_tokenizer: Any) -> None:
    a = Example((CompressedChunk(0, 3), CompressedChunk(1, 3)), ("abc", "def"), (10, 11, 12))
    b = Example((TokenSpan((5,)),), (), (20, 21))
    batch = collate([a, b], cache=None, encoder=minilm)
    # a: 2 chunk positions + 3 targets = 5; b: 1 + 2 = 3, left-padded to 5.
    assert batch.labels.shape == (2, 5)
    assert batch.labels[0].tolist() == [IGNORE, 10, 11, 12, IGNORE]
    assert batch.labels[1].tolist() == [IGNORE, IGNORE, 20, 21, IGNORE]
    assert batch.placements[1][0] == TokenSpan((5,))
    assert batch.chunk_input_ids is not None and batch.chunk_input_ids.shape[0] == 2
    assert batch.n_targets == 5


def test_reconstruct_can_train_the_encoder(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """Trainable encoder: encoder and projector change, the decoder does not; it reloads."""
    import dataclasses

    from refrag_agent.model.config import EncoderConfig
    from refrag_agent.training import with_stage

    smoke = get_preset("smoke")
    preset = dataclasses.replace(smoke, encoder=EncoderConfig(path=str(tiny_bert_dir)))
    preset = with_stage(preset, dataclasses.replace(smoke.stage("reconstruct"), train_encoder=True))
    start = train(preset, stages=["reconstruct"], resume=False, out_dir=tmp_path / "a",
                  max_steps=1, progress=False)  # fmt: skip
    assert start["reconstruct"]["trained"] == ["projector", "encoder"]
    model = RefragModel.load(tmp_path / "a" / "reconstruct" / "model")
    fresh = RefragModel.load(tmp_path / "a" / "reconstruct" / "model", check_encoder=False)
    assert model.encoder.fingerprint == fresh.encoder.fingerprint
    from refrag_agent.model.encoder import ChunkEncoder

    before = ChunkEncoder.load(EncoderConfig(path=str(tiny_bert_dir)))
    changed = [
        not torch.equal(a, b)
        for (name, a), b in zip(
            before.model.named_parameters(), model.encoder.model.parameters(), strict=True
        )
        if "pooler" not in name  # mean pooling: the pooler head gets no gradient
    ]
    assert all(changed)
