"""Search efficiency: success rate per optimizer at equal policy-call budgets.

Suites with a known optimum and a simulated noisy-oracle policy (named as such):
the deceptive chain (optimum 1.0, trap 0.3), FrozenLake 4x4 and CliffWalking
(success = value iteration's optimal return). One row per suite and budget.
Searches run with repeatable=True, so the table is the same every run.
Run: python benchmarks/search_efficiency.py [--tasks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import zlib

from _table import emit

from trajgraph.bench import OPTIMIZERS, run_bench, summarise


def _policy_for(skill: float):
    from trajgraph.policies import SimulatedPolicy
    from trajgraph.testing.chain_suite import ChainTask, NoisyOracle

    def for_task(task):
        seed = zlib.crc32(task.id.encode())
        if isinstance(task, ChainTask):
            return NoisyOracle(task, skill=skill, seed=seed)
        return SimulatedPolicy(skill=skill, oracle=task.oracle, seed=seed)

    return for_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20)
    args = ap.parse_args()
    from trajgraph.adapters.gym_toytext import CliffWalkingSuite, FrozenLakeSuite
    from trajgraph.envloop.task import Suite
    from trajgraph.testing.chain_suite import ChainSuite

    cases: list[tuple[str, Suite, float, tuple[int, ...]]] = [("chain (depth 5)", ChainSuite(5), 0.6, (8, 16, 32)),
             ("frozenlake 4x4", FrozenLakeSuite(size=4), 0.5, (16, 32, 64)),
             ("cliffwalking", CliffWalkingSuite(), 0.8, (50, 100, 200))]
    names = list(OPTIMIZERS)
    rows = []
    for label, suite, skill, budgets in cases:
        tasks = suite.tasks("test", args.tasks, 0)
        for budget in budgets:
            t0 = time.perf_counter()
            results = asyncio.run(run_bench(tasks, names, policy_for=_policy_for(skill), budget=budget, concurrency=2,
                                            repeatable=True))
            row = {"suite": label, "policy": f"simulated(skill={skill})", "budget": budget}
            for s in summarise(results, names):
                row[s.optimizer] = f"{s.success_rate:.0%} ({s.policy_calls:.0f})"
            row["wall_s"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
    emit("search_efficiency", f"success rate (mean policy calls) over {args.tasks} test tasks", rows)


if __name__ == "__main__":
    main()
