import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from refrag_agent.budget import Budget
from refrag_agent.policies import (
    Episode,
    LearnedPolicy,
    PolicyConfig,
    PolicyInput,
    PolicyNetwork,
    load_policy,
)
from refrag_agent.policies.toy import NeedleTask, random_input
from refrag_agent.training import GRPOConfig, grpo_step, train_grpo

DIM = 8
CONFIG = PolicyConfig(embed_dim=DIM, d_model=16, n_layers=1, n_heads=2)


@pytest.fixture(scope="module")
def accelerator() -> Accelerator:
    return Accelerator(cpu=True)


class FrozenScorer(torch.nn.Module):
    """Stands in for the frozen REFRAG model: scores what the expansion lets it see."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(DIM, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        )
        self.requires_grad_(False)

    def reward(self, inputs: PolicyInput, expanded: Sequence[int]) -> float:
        mask = torch.zeros(inputs.n_chunks, 1)
        mask[list(expanded)] = 1.0
        return float((self.net(inputs.embeddings) * mask).sum())


def test_one_grpo_step_changes_every_policy_parameter_and_no_model_parameter(
    accelerator: Accelerator,
) -> None:
    torch.manual_seed(0)
    network = PolicyNetwork(CONFIG)
    model = FrozenScorer()
    frozen_before = {k: v.clone() for k, v in model.state_dict().items()}
    before = {k: v.detach().clone() for k, v in network.named_parameters()}
    config = GRPOConfig(group_size=8, ppo_epochs=2, lr=1e-3)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=0.0)
    # Every segment kind appears, so every kind embedding takes part.
    episode = Episode(random_input(12, DIM, lengths=[16, 5, 16, 9] * 3), Budget(p=0.4))
    metrics = grpo_step(
        network,
        optimizer,
        [episode],
        model.reward,
        config,
        accelerator=accelerator,
        generator=torch.Generator().manual_seed(0),
    )
    assert set(metrics) >= {"rl/reward_mean", "rl/advantage_std", "rl/clip_frac", "rl/loss"}
    assert metrics["rl/advantage_std"] > 0  # the group's rewards differed
    for name, param in network.named_parameters():
        assert not torch.equal(param.detach(), before[name]), f"{name} did not change"
    for name, value in model.state_dict().items():
        assert torch.equal(value, frozen_before[name]), f"frozen {name} changed"


def test_flat_rewards_leave_the_policy_alone(accelerator: Accelerator) -> None:
    torch.manual_seed(0)
    network = PolicyNetwork(CONFIG)
    before = {k: v.detach().clone() for k, v in network.named_parameters()}
    config = GRPOConfig(group_size=4, ppo_epochs=1)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-2, weight_decay=0.0)
    metrics = grpo_step(
        network,
        optimizer,
        [Episode(random_input(8, DIM), Budget(p=0.5))],
        lambda inputs, expanded: 1.0,
        config,
        accelerator=accelerator,
        generator=torch.Generator().manual_seed(0),
    )
    assert metrics["rl/advantage_std"] == 0.0 and metrics["rl/loss"] == 0.0
    for name, param in network.named_parameters():
        assert torch.equal(param.detach(), before[name]), name


def test_learns_to_expand_the_chunk_holding_the_answer(
    tmp_path: Path, accelerator: Accelerator
) -> None:
    torch.manual_seed(0)
    task = NeedleTask(n_chunks=12, embed_dim=16, expand=1, seed=0)
    network = PolicyNetwork(PolicyConfig(embed_dim=16, d_model=32, n_layers=1, n_heads=2))
    config = GRPOConfig(steps=60, group_size=8, episodes_per_step=2, ppo_epochs=2, lr=3e-3)
    history = train_grpo(
        network,
        task,
        task.reward,
        config,
        out_dir=tmp_path,
        accelerator=accelerator,
        progress=False,
    )
    rewards = [m["rl/reward_mean"] for m in history]
    early, late = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert early < 0.4  # about 1/12 by chance
    assert late > 0.7, rewards
    # Greedy at inference, on episodes it never trained on.
    policy = LearnedPolicy(load_policy(tmp_path / "policy"))
    held_out = [task.episode(100_000 + i) for i in range(100)]
    hits = sum(answer in policy.select(ep.inputs, ep.budget).indices for ep, answer in held_out)
    assert hits >= 90


def test_resume_continues_where_it_stopped(tmp_path: Path, accelerator: Accelerator) -> None:
    task = NeedleTask(n_chunks=6, embed_dim=DIM, seed=1)

    def run(out: Path, steps: int) -> PolicyNetwork:
        torch.manual_seed(0)
        network = PolicyNetwork(CONFIG)
        config = GRPOConfig(steps=steps, group_size=4, checkpoint_every=2, kl_coef=0.1)
        train_grpo(
            network, task, task.reward, config, out_dir=out, accelerator=accelerator, progress=False
        )
        return network

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    resumed = run(tmp_path / "resumed", 4)
    for (name, a), (_, b) in zip(
        straight.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b), name
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    for r in records:
        assert {"rl/reward_mean", "rl/advantage_std", "rl/clip_frac", "rl/loss", "rl/kl"} <= set(r)
    assert json.loads((tmp_path / "resumed" / "checkpoint" / "trainer_state.json").read_text()) == {
        "step": 4
    }
