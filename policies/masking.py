"""The budget mask: which chunks may still be chosen, given what was chosen before.

Every policy chooses chunks one at a time. At each step a chunk is *allowed* when it is not
pinned, not yet chosen, and its tokens fit both the remaining total allowance and the
remaining allowance of its domain. The policy takes its best allowed chunk, the allowances
shrink, and selection stops when nothing is allowed. Caps are therefore enforced while
choosing, never by trimming a selection afterwards, and a selection always fills its budget
as far as chunk lengths let it.

Because allowances only shrink, a chunk that is not allowed at some step is never allowed
again. So "take the best allowed chunk, repeat" over fixed scores is one pass over the
chunks in score order, skipping those that do not fit (:func:`greedy_select`).
:func:`step_masks` replays the mask of every step for a chosen sequence, which the learned
policy needs for the log-probabilities of its choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from refrag_agent.budget import Budget
from refrag_agent.errors import InvalidInput

from .base import PolicyInput, Selection

# Stands for "no cap" in integer tensors; larger than any real token count.
_UNCAPPED = 2**62


@dataclass(frozen=True)
class Allowance:
    """A budget resolved against one context: token allowances and per-chunk facts."""

    total: int  # tokens the policy may expand, pins excluded
    domains: tuple[str, ...]  # distinct domains, sorted
    domain_caps: tuple[int | None, ...]  # per domain: tokens it may expand, None = uncapped
    domain_tokens: tuple[int, ...]  # per domain: its unpinned tokens
    domain_ids: tuple[int, ...]  # per chunk: index into ``domains``
    lengths: tuple[int, ...]  # per chunk: tokens
    pinned: tuple[bool, ...]  # per chunk: always expanded, outside the budget
    expandable_tokens: int  # tokens of the unpinned chunks

    @property
    def n_chunks(self) -> int:
        return len(self.lengths)

    def domain_fraction(self, domain_id: int) -> float:
        """The share of its unpinned tokens a domain may expand (1.0 when uncapped)."""
        cap, tokens = self.domain_caps[domain_id], self.domain_tokens[domain_id]
        if cap is None:
            return 1.0
        return cap / tokens if tokens else 0.0


def resolve(inputs: PolicyInput, budget: Budget) -> Allowance:
    """Resolve ``budget`` against the chunks of ``inputs``."""
    pinned = tuple(c.pinned or budget.is_pinned(c.segment_id) for c in inputs.chunks)
    lengths = tuple(c.n_tokens for c in inputs.chunks)
    domains = tuple(sorted({c.domain for c in inputs.chunks}))
    index = {domain: i for i, domain in enumerate(domains)}
    domain_ids = tuple(index[c.domain] for c in inputs.chunks)
    domain_tokens = [0] * len(domains)
    for n, d, pin in zip(lengths, domain_ids, pinned, strict=True):
        if not pin:
            domain_tokens[d] += n
    expandable = sum(domain_tokens)
    return Allowance(
        total=budget.total_allowance(expandable),
        domains=domains,
        domain_caps=tuple(
            budget.domain_allowance(d, n) for d, n in zip(domains, domain_tokens, strict=True)
        ),
        domain_tokens=tuple(domain_tokens),
        domain_ids=domain_ids,
        lengths=lengths,
        pinned=pinned,
        expandable_tokens=expandable,
    )


def greedy_select(scores: torch.Tensor, allowance: Allowance) -> list[int]:
    """Choose chunks by descending score, each the best one the budget still allows.

    Ties go to the lower index. Returns the policy's choices in order (pins excluded).
    """
    assert scores.shape == (allowance.n_chunks,), (scores.shape, allowance.n_chunks)
    remaining = allowance.total
    remaining_domain = [_UNCAPPED if cap is None else cap for cap in allowance.domain_caps]
    unpinned = [n for n, pin in zip(allowance.lengths, allowance.pinned, strict=True) if not pin]
    if remaining <= 0 or not unpinned:
        return []
    shortest = min(unpinned)
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    chosen: list[int] = []
    for i in order:
        if remaining < shortest:
            break  # nothing can fit any more: the mask is empty
        n, d = allowance.lengths[i], allowance.domain_ids[i]
        if allowance.pinned[i] or n > remaining or n > remaining_domain[d]:
            continue  # masked out at this step, hence at every later one
        chosen.append(i)
        remaining -= n
        remaining_domain[d] -= n
    return chosen


def allowed_mask(allowance: Allowance, chosen: Sequence[int]) -> torch.Tensor:
    """``(n,)`` bool: the chunks still allowed after choosing ``chosen``."""
    return step_masks(allowance, chosen, include_final=True)[-1]


def step_masks(
    allowance: Allowance, chosen: Sequence[int], *, include_final: bool = False
) -> torch.Tensor:
    """``(T, n)`` bool: row ``t`` is the mask the policy chose ``chosen[t]`` from.

    With ``include_final`` a last row, the mask after every choice, is appended
    (``(T + 1, n)``); for a selection that filled its budget that row is all False.
    """
    n, steps = allowance.n_chunks, len(chosen)
    rows = steps + 1 if include_final else steps
    lengths = torch.tensor(allowance.lengths, dtype=torch.long)  # (n,)
    domain_ids = torch.tensor(allowance.domain_ids, dtype=torch.long)  # (n,)
    pinned = torch.tensor(allowance.pinned, dtype=torch.bool)  # (n,)
    caps = torch.tensor(
        [_UNCAPPED if cap is None else cap for cap in allowance.domain_caps], dtype=torch.long
    )  # (n_domains,)
    idx = torch.tensor(list(chosen), dtype=torch.long)  # (T,)
    if steps and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise InvalidInput("chosen chunk index out of range", n_chunks=n, chosen=list(chosen))
    spent = lengths[idx]  # (T,)
    # Exclusive running sums: what was spent before each step (and after the last one).
    spent_total = torch.cat([spent.new_zeros(1), spent.cumsum(0)])[:rows]  # (rows,)
    per_domain = torch.zeros(steps, len(caps), dtype=torch.long)  # (T, n_domains)
    per_domain[torch.arange(steps), domain_ids[idx]] = spent
    spent_domain = torch.cat([per_domain.new_zeros(1, len(caps)), per_domain.cumsum(0)])[:rows]
    remaining_domain = (caps[None, :] - spent_domain)[:, domain_ids]  # (rows, n)
    remaining_total = allowance.total - spent_total  # (rows,)
    step_of = torch.full((n,), steps + 1, dtype=torch.long)  # (n,) when each chunk was chosen
    step_of[idx] = torch.arange(steps)
    already = step_of[None, :] < torch.arange(rows)[:, None]  # (rows, n)
    fits = (lengths[None, :] <= remaining_total[:, None]) & (lengths[None, :] <= remaining_domain)
    return fits & ~already & ~pinned[None, :]  # (rows, n)


def make_selection(
    policy: str, scores: torch.Tensor, allowance: Allowance, chosen: Sequence[int]
) -> Selection:
    """Pins (in index order) followed by the policy's choices."""
    pins = [i for i, pin in enumerate(allowance.pinned) if pin]
    return Selection(policy=policy, indices=(*pins, *chosen), scores=scores, n_pinned=len(pins))
