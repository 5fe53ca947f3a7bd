"""The rl stage: a thin adapter onto the expansion policy's GRPO trainer (:mod:`.grpo`).

Episodes are agent-memory tasks laid out as the SDK lays them out; the policy picks which
chunks to expand under ``Budget(p=rl_p)``; the reward is the negative log-perplexity of the
*gold* answer under the frozen REFRAG model given that expansion (the paper's reward; never
the model's own rollouts). Encoder, projector and decoder stay frozen; only the policy
trains, and :func:`.grpo.train_grpo` owns its loop, checkpoints and resume.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from refrag_agent.budget import Budget
from refrag_agent.context import policy_input
from refrag_agent.errors import InvalidInput
from refrag_agent.model.refrag import RefragModel
from refrag_agent.policies import Episode, PolicyConfig, PolicyInput, PolicyNetwork
from refrag_agent.training.dialogues import natural_example
from refrag_agent.training.grpo import CHECKPOINT_DIR, STATE_FILE, GRPOConfig, train_grpo
from refrag_agent.training.presets import Preset, StageConfig
from refrag_agent.training.stages import RefragLM, VectorCache, collate, layout_task, task_size
from refrag_agent.training.tasks import TaskExample, TaskName, mixed_example

RL_TASKS: tuple[TaskName, ...] = ("niah_single", "niah_multikey", "memory_qa", "fact_update")
EPISODE_SEED_BASE = 1 << 32  # away from the SFT seeds


def train_rl(
    preset: Preset,
    config: StageConfig,
    model: RefragModel,
    stage_dir: Path,
    accelerator: Accelerator,
    *,
    resume: bool,
    max_steps: int | None = None,
) -> dict[str, Any]:
    if not resume and (stage_dir / CHECKPOINT_DIR / STATE_FILE).is_file():
        raise InvalidInput(
            "out_dir holds an interrupted run of this stage",
            stage="rl",
            out_dir=str(stage_dir.parent),
            fix="pass resume=True (--resume) to continue it, or use a new out_dir",
        )

    stage_dir.mkdir(parents=True, exist_ok=True)
    for part in (model.decoder, model.projector, model.encoder):
        part.requires_grad_(False).eval()
    frozen = RefragLM(model.decoder, model.projector, model.encoder)
    cache = VectorCache(model.encoder)
    k = preset.k
    size = task_size(config.n_chunks(0) if config.curriculum else 8)
    live: OrderedDict[int, tuple[PolicyInput, TaskExample]] = OrderedDict()

    def episodes(i: int) -> Episode:
        if preset.sft_tasks == "natural":
            task = natural_example(EPISODE_SEED_BASE + i, size=size)
        else:
            task = mixed_example(EPISODE_SEED_BASE + i, size=size, tasks=RL_TASKS)
        example, d = layout_task(task, model.tokenizer, k=k, template=model.template, expand=set())
        vectors = cache(list(example.chunk_texts))  # (n, enc_dim)
        query = cache([task.question])[0]  # (enc_dim,)
        inputs = policy_input(d, vectors, query)  # the SDK's features, age included
        # Keyed by identity (the inputs hold tensors); bounded, and kept alive while held.
        live[id(inputs)] = (inputs, task)
        while len(live) > 256:
            live.popitem(last=False)
        return Episode(inputs=inputs, budget=Budget(p=config.rl_p))

    @torch.no_grad()
    def reward(inputs: PolicyInput, expanded: Sequence[int]) -> float:
        _, task = live[id(inputs)]
        example, _ = layout_task(
            task, model.tokenizer, k=k, template=model.template, expand=set(expanded)
        )
        batch = collate([example], cache=cache, encoder=model.encoder)
        return -float(frozen(batch))  # negative log-perplexity of the gold answer

    steps = config.total_steps if max_steps is None else min(config.total_steps, max_steps)
    network = PolicyNetwork(PolicyConfig(embed_dim=model.encoder.dim, chunk_tokens=k))
    grpo = GRPOConfig(
        steps=steps,
        group_size=config.rl_group_size,
        episodes_per_step=config.batch_size,
        lr=config.lr,
        max_grad_norm=config.max_grad_norm,
        seed=preset.seed,
        checkpoint_every=config.checkpoint_every,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    history = train_grpo(
        network, episodes, reward, grpo, out_dir=stage_dir, accelerator=accelerator
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rewards = [h["rl/reward_mean"] for h in history]
    return {
        "steps": steps,
        "total_steps": config.total_steps,
        "steps_run": len(history),
        "seconds": round(elapsed, 2),
        "seconds_per_step": round(elapsed / max(1, len(history)), 4),
        "cpu_seconds_per_step": round(cpu / max(1, len(history)), 4),
        "reward_first": round(rewards[0], 4) if rewards else None,
        "reward_last": round(rewards[-1], 4) if rewards else None,
        "policy_dir": str(stage_dir / "policy"),
        "trained": ["policy"],
    }
