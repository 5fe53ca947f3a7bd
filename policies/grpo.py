"""GRPO with PPO clipping for the expansion policy, as pure functions on tensors.

One *episode* is one context with its budget; the policy samples a *group* of ``G``
selections for it, each a sequence of ``T_i`` choices, and each selection gets one scalar
reward (in REFRAG: the negative log-perplexity of the target under the frozen model).

Kept from PPO / GRPO (Schulman et al. 2017; Shao et al. 2024):

- the group baseline: a selection's advantage is its reward standardised within its group,
  so no value network is needed (:func:`group_advantages`);
- the clipped importance ratio, per choice, against the policy that sampled the rollouts,
  which makes several optimisation epochs over the same rollouts safe
  (:func:`clipped_surrogate`);
- GRPO's averaging: mean over a sequence's choices first, then over the group, so long
  selections do not outweigh short ones;
- an optional KL penalty to a frozen reference policy, with the non-negative ``k3``
  estimator, added to the loss rather than folded into the reward (:func:`kl_estimate`).

Dropped: the value network and GAE (one reward per selection, nothing to bootstrap), the
entropy bonus (the group baseline and sampling keep exploring on this small action space),
per-choice rewards (the one reward is broadcast to every choice of its selection), and
reward models (the reward is computed directly under the frozen REFRAG model).
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """Standardise rewards within each group: ``(r - mean) / std``.

    rewards ``(..., G)``; returns the same shape. A group whose rewards are all equal (std
    below ``eps``) teaches nothing and gets zero advantages, not NaN or noise blown up by
    ``1 / eps``.
    """
    assert rewards.shape[-1] >= 1, rewards.shape
    rewards = rewards.float()
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, keepdim=True, unbiased=False)
    flat = std < eps
    return torch.where(flat, torch.zeros_like(rewards), (rewards - mean) / std.clamp_min(eps))


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last dim where ``mask`` (``(G, T)`` -> ``(G,)``); 0 for an empty row."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def clipped_surrogate(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate loss (to minimise) and the fraction of clipped choices.

    new/old log-probs ``(G, T)`` per choice (padded), advantages ``(G,)`` per selection,
    mask ``(G, T)`` True on real choices. Loss: ``-mean_i mean_t min(r A, clip(r) A)`` with
    ``r = exp(new - old)``.
    """
    assert new_log_probs.shape == old_log_probs.shape == mask.shape, (
        new_log_probs.shape,
        old_log_probs.shape,
        mask.shape,
    )
    assert advantages.shape == new_log_probs.shape[:1], (advantages.shape, new_log_probs.shape)
    # Padded entries are set to 0 before exp so they cannot overflow into NaN gradients.
    log_ratio = torch.where(mask, new_log_probs - old_log_probs.detach(), 0.0)
    ratio = log_ratio.exp()  # (G, T)
    adv = advantages.detach()[:, None]  # (G, 1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * adv
    loss = -masked_mean(torch.minimum(unclipped, clipped), mask).mean()
    was_clipped = ((ratio - 1.0).abs() > clip_range) & mask
    clip_frac = was_clipped.float().sum() / mask.float().sum().clamp_min(1.0)
    return loss, clip_frac.detach()


def kl_estimate(
    new_log_probs: torch.Tensor, ref_log_probs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``k3`` estimate of KL(new || ref) on the sampled choices, averaged like the loss.

    ``exp(ref - new) - (ref - new) - 1`` (Schulman's ``k3``): never negative, and low
    variance; it is unbiased when the choices were sampled from the new policy, which holds
    on the first PPO epoch and approximately after.
    """
    delta = torch.where(mask, ref_log_probs.detach() - new_log_probs, 0.0)  # (G, T)
    return masked_mean(delta.exp() - delta - 1.0, mask).mean()
