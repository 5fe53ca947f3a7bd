"""Cost of the learned expansion policy: forward plus selection at ``n`` chunks.

The policy runs on every decoder call, so issue 5 bounds it at 5% of the compressed prefill
of the decoder it serves. This prints the policy's side of that ratio; compare it with the
prefill of ``n`` compressed positions measured by the latency benchmark on the same machine
and thread count.

Run: ``python -m refrag_agent.bench.policy_cost --chunks 1024``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from refrag_agent.budget import Budget
from refrag_agent.policies import LearnedPolicy, PolicyConfig, PolicyNetwork
from refrag_agent.policies.toy import random_input


@dataclass(frozen=True)
class PolicyCost:
    """Wall time of one greedy ``LearnedPolicy.select`` call, in milliseconds."""

    n_chunks: int
    p: float
    threads: int
    repeats: int
    median_ms: float
    p90_ms: float
    min_ms: float
    n_expanded: int


def measure_policy_cost(
    n_chunks: int = 1024,
    *,
    p: float = 0.25,
    config: PolicyConfig | None = None,
    repeats: int = 30,
    warmup: int = 3,
    threads: int | None = None,
) -> PolicyCost:
    """Time feature building, the network's forward and masked greedy selection."""
    if threads is not None:
        torch.set_num_threads(threads)
    config = config or PolicyConfig()
    torch.manual_seed(0)
    policy = LearnedPolicy(PolicyNetwork(config).eval())
    inputs = random_input(n_chunks, config.embed_dim, chunk_tokens=config.chunk_tokens)
    budget = Budget(p=p)
    selection = policy.select(inputs, budget)
    for _ in range(warmup):
        policy.select(inputs, budget)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.select(inputs, budget)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return PolicyCost(
        n_chunks=n_chunks,
        p=p,
        threads=torch.get_num_threads(),
        repeats=repeats,
        median_ms=statistics.median(times),
        p90_ms=times[min(len(times) - 1, int(0.9 * len(times)))],
        min_ms=times[0],
        n_expanded=len(selection.indices),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunks", type=int, default=1024)
    parser.add_argument("--p", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    cost = measure_policy_cost(args.chunks, p=args.p, repeats=args.repeats, threads=args.threads)
    if args.json:
        print(json.dumps(asdict(cost)))
        return
    print(
        f"learned policy, {cost.n_chunks} chunks, p={cost.p}, {cost.threads} threads: "
        f"median {cost.median_ms:.2f} ms, p90 {cost.p90_ms:.2f} ms "
        f"({cost.n_expanded} chunks expanded); the 5% bound needs a compressed prefill of "
        f"at least {20 * cost.median_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
