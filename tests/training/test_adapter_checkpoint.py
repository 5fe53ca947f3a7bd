"""A model on a known base decoder trains its LoRA adapter only and saves it apart."""

from __future__ import annotations

from pathlib import Path

import torch

from refrag_agent.engines import BUNDLED_MODEL
from refrag_agent.model.adapter import is_adapted
from refrag_agent.model.refrag import RefragModel
from refrag_agent.training.presets import StageConfig
from refrag_agent.training.stages import set_trainable


def test_the_adapter_trains_alone_saves_apart_and_merges_to_the_same_logits(
    tmp_path: Path,
) -> None:
    model = RefragModel.load(BUNDLED_MODEL, merge_adapter=False)
    assert is_adapted(model.decoder)
    params = set_trainable(model, StageConfig("sft", train_decoder=True))
    names = {n for n, p in model.decoder.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)  # the base stays frozen
    n_projector = sum(p.numel() for p in model.projector.parameters())
    assert sum(p.numel() for p in params) == n_projector + sum(
        p.numel() for p in model.decoder.parameters() if p.requires_grad
    )

    saved = model.save(tmp_path / "model")
    assert (saved / "adapter" / "adapter_model.safetensors").is_file()
    assert not (saved / "decoder").exists()  # the base is never written

    plan = model.plan(["<|im_start|>user\nWhat is my locker code?<|im_end|>\n"])
    unmerged = model.logits([plan])
    merged = RefragModel.load(saved)  # fingerprints checked, adapter merged
    assert not is_adapted(merged.decoder)
    assert torch.allclose(merged.logits([plan]), unmerged, atol=1e-4)
