"""GRPO trainer of the learned expansion policy: what the rl stage (:mod:`.rl`) runs.

Reads top to bottom: :func:`train_grpo` sets up an ``accelerate.Accelerator``, the
optimizer and (if asked) a frozen reference policy, resumes from ``out_dir`` when a
checkpoint is there, then loops: draw episodes, :func:`grpo_step`, log, checkpoint.
:func:`grpo_step` is one update: sample a group of selections per episode, reward them,
then ``ppo_epochs`` passes of clipped-surrogate loss, backward, clip, step. The maths lives
in :mod:`refrag_agent.policies.grpo`, the network in :mod:`refrag_agent.policies.network`.

The reward is injected: ``reward(inputs, expanded) -> float`` for one context and the
chunks expanded in it (pins included). In REFRAG it is the negative log-perplexity of the
target (next paragraph, or the answer) under the frozen model given that expansion; any
frozen model it runs is the caller's and is never touched here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from accelerate import Accelerator
from tqdm.auto import tqdm

from refrag_agent.errors import InvalidInput, ModelError
from refrag_agent.logs import get_logger
from refrag_agent.policies.base import Episode, PolicyInput
from refrag_agent.policies.grpo import clipped_surrogate, group_advantages, kl_estimate
from refrag_agent.policies.masking import Allowance, resolve
from refrag_agent.policies.network import (
    PolicyNetwork,
    Rollout,
    load_policy,
    policy_logits,
    rollout_from_logits,
    save_policy,
)

log = get_logger(__name__)

RewardFn = Callable[[PolicyInput, Sequence[int]], float]
"""``(inputs, expanded chunk indices) -> reward``; higher is better."""

EpisodeSource = Callable[[int], Episode]
"""Episode number -> episode. Indexed, so a resumed run sees the same stream of episodes."""

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng_state.pt"
REFERENCE_DIR = "reference"
POLICY_DIR = "policy"


@dataclass(frozen=True)
class GRPOConfig:
    """Everything the GRPO trainer of the learned policy needs, in one place."""

    steps: int = 200
    group_size: int = 8  # rollouts per context; their rewards are normalised together
    episodes_per_step: int = 1  # contexts per optimizer step
    ppo_epochs: int = 2  # passes over the same rollouts; the clip keeps them near the old policy
    clip_range: float = 0.2
    kl_coef: float = 0.0  # > 0 adds a KL estimate to a frozen copy of the initial policy
    lr: float = 3e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 50  # steps between resumable checkpoints (0 = only at the end)

    def __post_init__(self) -> None:
        for name in ("steps", "group_size", "episodes_per_step", "ppo_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} must be a positive integer", field=name, value=value)
        if self.group_size < 2:
            raise InvalidInput(
                "group_size must be at least 2: advantages are relative to the group",
                group_size=self.group_size,
            )
        if self.checkpoint_every < 0:
            raise InvalidInput("checkpoint_every must be >= 0", value=self.checkpoint_every)
        if not 0.0 < self.clip_range < 1.0:
            raise InvalidInput("clip_range must be in (0, 1)", clip_range=self.clip_range)
        for name in ("kl_coef", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0.0:
                raise InvalidInput(f"{name} must be >= 0", field=name, value=getattr(self, name))
        if self.lr <= 0.0:
            raise InvalidInput("lr must be > 0", lr=self.lr)


@dataclass
class _Group:
    """The rollouts of one episode, padded to the longest selection."""

    inputs: PolicyInput
    allowance: Allowance
    chosen: torch.Tensor  # (G, T) long, 0 where padded
    masks: torch.Tensor  # (G, T, n) bool, all True where padded (keeps log_softmax finite)
    valid: torch.Tensor  # (G, T) bool
    old_log_probs: torch.Tensor  # (G, T)
    ref_log_probs: torch.Tensor | None  # (G, T)
    rewards: torch.Tensor  # (G,)


def _pad(rollouts: Sequence[Rollout], n: int) -> tuple[torch.Tensor, ...]:
    G, T = len(rollouts), max((len(r.chosen) for r in rollouts), default=0)
    chosen = torch.zeros(G, T, dtype=torch.long)
    masks = torch.ones(G, T, n, dtype=torch.bool)
    valid = torch.zeros(G, T, dtype=torch.bool)
    old = torch.zeros(G, T)
    for g, r in enumerate(rollouts):
        t = len(r.chosen)
        chosen[g, :t] = torch.tensor(r.chosen, dtype=torch.long)
        masks[g, :t] = r.masks
        valid[g, :t] = True
        old[g, :t] = r.log_probs
    return chosen, masks, valid, old


def _group_log_probs(logits: torch.Tensor, group: _Group) -> torch.Tensor:
    """``(G, T)`` log-probs of every rollout's choices under ``logits`` ``(n,)``."""
    masked = logits[None, None, :].masked_fill(~group.masks, float("-inf"))  # (G, T, n)
    lp = masked.log_softmax(dim=-1).gather(2, group.chosen[..., None]).squeeze(-1)  # (G, T)
    return torch.where(group.valid, lp, 0.0)


def _sample_group(
    network: nn.Module,
    episode: Episode,
    reward: RewardFn,
    group_size: int,
    generator: torch.Generator,
    reference: nn.Module | None,
) -> _Group:
    allowance = resolve(episode.inputs, episode.budget)
    with torch.no_grad():
        logits = policy_logits(network, episode.inputs, allowance).float().cpu()
    rollouts = [
        rollout_from_logits(logits, allowance, generator=generator) for _ in range(group_size)
    ]
    pins = [i for i, pin in enumerate(allowance.pinned) if pin]
    rewards = torch.tensor(
        [float(reward(episode.inputs, (*pins, *r.chosen))) for r in rollouts]
    )  # (G,)
    if not bool(torch.isfinite(rewards).all()):
        raise InvalidInput("the reward function returned a non-finite reward", rewards=rewards)
    chosen, masks, valid, old = _pad(rollouts, episode.inputs.n_chunks)
    group = _Group(episode.inputs, allowance, chosen, masks, valid, old, None, rewards)
    if reference is not None:
        with torch.no_grad():
            ref_logits = policy_logits(reference, episode.inputs, allowance).float().cpu()
            group.ref_log_probs = _group_log_probs(ref_logits, group)
    return group


def grpo_step(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    episodes: Sequence[Episode],
    reward: RewardFn,
    config: GRPOConfig,
    *,
    accelerator: Accelerator,
    generator: torch.Generator,
    reference: nn.Module | None = None,
) -> dict[str, float]:
    """One GRPO update: sample groups, reward them, ``ppo_epochs`` clipped-surrogate steps."""
    network.train()
    groups = [
        _sample_group(network, ep, reward, config.group_size, generator, reference)
        for ep in episodes
    ]
    advantages = [group_advantages(g.rewards) for g in groups]  # each (G,)
    clip_fracs, losses, kls = [], [], []
    for _ in range(config.ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        epoch_loss = 0.0
        for group, adv in zip(groups, advantages, strict=True):
            logits = policy_logits(network, group.inputs, group.allowance).float().cpu()
            new = _group_log_probs(logits, group)  # (G, T)
            loss, clip_frac = clipped_surrogate(
                new, group.old_log_probs, adv, group.valid, clip_range=config.clip_range
            )
            if group.ref_log_probs is not None:
                kl = kl_estimate(new, group.ref_log_probs, group.valid)
                loss = loss + config.kl_coef * kl
                kls.append(float(kl.detach()))
            accelerator.backward(loss / len(groups))
            epoch_loss += float(loss.detach()) / len(groups)
            clip_fracs.append(float(clip_frac))
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(network.parameters(), config.max_grad_norm)
        optimizer.step()
        losses.append(epoch_loss)
    rewards = torch.cat([g.rewards for g in groups])
    metrics = {
        "rl/reward_mean": float(rewards.mean()),
        "rl/advantage_std": float(torch.cat(advantages).std(unbiased=False)),
        "rl/clip_frac": sum(clip_fracs) / len(clip_fracs),
        "rl/loss": losses[-1],
    }
    if kls:
        metrics["rl/kl"] = sum(kls) / len(kls)
    return metrics


def train_grpo(
    network: PolicyNetwork,
    episodes: EpisodeSource,
    reward: RewardFn,
    config: GRPOConfig,
    *,
    out_dir: str | Path | None = None,
    accelerator: Accelerator | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``network`` in place with GRPO; returns the metrics of the steps run now.

    With ``out_dir``: metrics go to ``metrics.jsonl``, a resumable checkpoint to
    ``checkpoint/`` every ``config.checkpoint_every`` steps and at the end, the trained policy
    to ``policy/`` (:func:`save_policy`). A run started on an ``out_dir`` that holds a
    checkpoint continues from it.
    """
    accelerator = accelerator or Accelerator()
    out = Path(out_dir) if out_dir is not None else None
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    reference: nn.Module | None = None
    if config.kl_coef > 0:
        # The reference is the policy as training first found it; kept on disk for resumes.
        if out is not None and (out / REFERENCE_DIR).exists():
            reference = load_policy(out / REFERENCE_DIR)
        else:
            reference = copy.deepcopy(network)
            if out is not None and accelerator.is_main_process:
                save_policy(reference, out / REFERENCE_DIR)
        reference.eval().requires_grad_(False)
    model, optimizer = accelerator.prepare(network, optimizer)

    start = 0
    if out is not None and (out / CHECKPOINT_DIR / STATE_FILE).exists():
        start = _resume(accelerator, model, optimizer, out)
        _truncate_metrics(out / METRICS_FILE, start)
        log.info("grpo.resume", step=start, out_dir=str(out))

    history: list[dict[str, float]] = []
    bar = tqdm(
        range(start, config.steps),
        initial=start,
        total=config.steps,
        desc="grpo",
        disable=not (progress and accelerator.is_main_process),
    )
    for step in bar:
        batch = [
            episodes(step * config.episodes_per_step + j) for j in range(config.episodes_per_step)
        ]
        # One generator per step: a resumed run samples what the uninterrupted one would.
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        metrics = grpo_step(
            model,
            optimizer,
            batch,
            reward,
            config,
            accelerator=accelerator,
            generator=generator,
            reference=reference,
        )
        history.append(metrics)
        bar.set_postfix(reward=f"{metrics['rl/reward_mean']:.3f}")
        if out is not None and accelerator.is_main_process:
            with (out / METRICS_FILE).open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
        done = step + 1
        every = config.checkpoint_every
        if out is not None and (done == config.steps or (every and done % every == 0)):
            _checkpoint(accelerator, model, optimizer, out, done)
    if out is not None and accelerator.is_main_process:
        save_policy(accelerator.unwrap_model(model), out / POLICY_DIR)
    return history


def _checkpoint(
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    out: Path,
    step: int,
) -> None:
    """Policy weights, optimizer and RNG state, then the step: enough to resume exactly."""
    ckpt = out / CHECKPOINT_DIR
    state = ckpt / STATE_FILE
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # The state file is the commit marker: removed first, written last, so a save cut
        # short leaves a checkpoint that is not resumed from.
        state.unlink(missing_ok=True)
        save_policy(accelerator.unwrap_model(model), ckpt)
        torch.save(optimizer.state_dict(), ckpt / OPTIMIZER_FILE)
        torch.save(torch.get_rng_state(), ckpt / RNG_FILE)
        state.write_text(json.dumps({"step": step}), encoding="utf-8")
    accelerator.wait_for_everyone()
    log.info("grpo.checkpoint", step=step, out_dir=str(out))


def _resume(
    accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer, out: Path
) -> int:
    ckpt = out / CHECKPOINT_DIR
    try:
        saved = load_policy(ckpt)
        optimizer_state = torch.load(ckpt / OPTIMIZER_FILE, weights_only=True)
        rng_state = torch.load(ckpt / RNG_FILE, weights_only=True)
        step = int(json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError("cannot resume from the GRPO checkpoint", path=str(ckpt)) from e
    inner = accelerator.unwrap_model(model)
    if saved.config != inner.config:
        raise InvalidInput(
            "the checkpoint's policy config differs from the network being trained",
            checkpoint=saved.config,
            network=inner.config,
        )
    inner.load_state_dict(saved.state_dict())
    optimizer.load_state_dict(optimizer_state)
    torch.set_rng_state(rng_state)
    return step


def _truncate_metrics(path: Path, start: int) -> None:
    """Drop metrics of steps past the checkpoint: the resumed run logs them again."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line and json.loads(line)["step"] < start]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
