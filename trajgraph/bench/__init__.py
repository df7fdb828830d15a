"""Benchmark optimizers against each other at equal budgets on a task suite.

A suite yields tasks (duck-typed like `trajgraph.envloop.task.TaskSpec`: `id`,
`input`, `decision_node`, `make_graph(policy_node) -> (graph, env)`, `outcome`,
`max_steps`). For every optimizer and test task, one search runs with the same
policy-call budget; everything is recorded in the store (`task` = task id, tags
`bench` and the optimizer name) and summarised per optimizer with a Wilson
confidence interval on the success rate.

Optimizers are compared at the calls they actually spent: a budget is a bound
(the greedy finish is paid from it), so `policy_calls` is the spend, never more
than the budget, and `overrun_policy_calls` (the table's overrun column) reads 0.
A search that ended without a finished answer is counted as a failure and as
`unfinished`.
"""

from __future__ import annotations

import asyncio
import functools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from trajgraph._internal.aio import OWN_LOOP
from trajgraph._internal.threads import model_threads_for
from trajgraph.errors import ConfigError
from trajgraph.search.budget import Budget
from trajgraph.search.optimize import asearch
from trajgraph.search.optimizers import BY_NAME
from trajgraph.store import Store

# MCTS simulates from the best new child after each evaluation, as LATS does, with a reward model
# too (the library's default, simulate_best=None, does not): on the demo's TextWorld games, where
# ~28-decision episodes leave a 100-call tree far from any end, it solved 6, 7, 6, 5, 5 of 20 with
# five reward models against 4, 5, 5, 5, 5 without (benchmarks/README.md, "TextWorld gate"); on
# 3-room trap chains with a trained model it solved 1 of 3 against 2 (tests/test_reward_search.py)
_BENCH_SETTINGS: dict[str, dict[str, Any]] = {"rro": {"group": 1, "k_max": 4}, "mcts": {"k": 3, "simulate_best": True},
                                               "se-agent": {"population": 3, "generations": 3}}
OPTIMIZERS: dict[str, Callable[[], Any]] = {name: functools.partial(cls, **_BENCH_SETTINGS.get(name, {}))
                                            for name, cls in BY_NAME.items()}


def parse_optimizers(names: str | Sequence[str]) -> list[str]:
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in items if n not in OPTIMIZERS]
    if unknown or not items:
        raise ConfigError(f"unknown optimizer {', '.join(unknown) or '(none given)'}; choose from {', '.join(OPTIMIZERS)}")
    return items


@dataclass
class TaskResult:
    optimizer: str
    task: str
    outcome: float | None
    success: bool
    policy_calls: int
    overrun_policy_calls: int
    env_steps: int
    decisions: int  # decision steps on the returned trajectory
    candidates_per_step: float
    wall_s: float
    run_id: str | None
    stopped_by: str | None
    status: str = "succeeded"  # "unfinished": no finished answer within the budget


@dataclass
class Summary:
    optimizer: str
    tasks: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_score: float
    policy_calls: float  # mean calls actually spent (finish included)
    candidates_per_step: float
    env_steps: float
    wall_s: float
    overrun_policy_calls: float = 0.0  # mean calls past the budget: 0 while the budget binds
    unfinished: int = 0  # tasks whose search ended without a finished answer


@dataclass
class BenchReport:
    suite: str
    policy: str
    reward: str
    budget: int
    summaries: list[Summary]
    results: list[TaskResult]
    config: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "policy": self.policy, "reward": self.reward, "budget": self.budget,
                "summaries": [asdict(s) for s in self.summaries], "results": [asdict(r) for r in self.results],
                "curves": {k: [list(p) for p in v] for k, v in self.curves.items()}, "config": self.config}


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


async def run_one(task: Any, optimizer_name: str, *, policy_for: Callable[[Any], Any], reward: Any, budget: int,
                  store: Store | None, success: float, tags: Sequence[str] = (), graph_name: str | None = None,
                  repeatable: bool = False, transpositions: bool = True) -> TaskResult:
    """One search. `policy_for(task)` gives the agent's decision-node function; when it
    also has `propose(state, k)` the k candidates come from that (batched) instead.
    `transpositions=False`: every trajectory as the policy walks it, detours and loops kept
    (the demo explores so for its reward model's data: `trajgraph.cli.bench`)."""
    agent_policy = policy_for(task)
    policy = agent_policy if hasattr(agent_policy, "propose") else None
    graph, env = task.make_graph(agent_policy)
    t0 = time.perf_counter()
    result = await asearch(graph, task.input, decision_node=task.decision_node, optimizer=OPTIMIZERS[optimizer_name](),
                           reward=reward, outcome=task.outcome, budget=Budget(policy_calls=budget), store=store,
                           policy=policy, environment=env, task=task.id, tags=("bench", optimizer_name, *tags),
                           name=graph_name or graph.get_name(), repeatable=repeatable, transpositions=transpositions)
    decisions = max(1, result.best.depth)
    per_step = result.stats.get("mean_candidates_per_step") or result.spent.policy_calls / decisions
    outcome = result.outcome
    return TaskResult(optimizer=optimizer_name, task=task.id, outcome=outcome, success=outcome is not None and outcome >= success,
                      policy_calls=result.spent.policy_calls, overrun_policy_calls=result.spent.overrun_policy_calls,
                      env_steps=result.spent.env_steps, decisions=decisions, candidates_per_step=float(per_step),
                      wall_s=time.perf_counter() - t0, run_id=result.run_id, stopped_by=result.spent.stopped_by,
                      status=result.status)


async def run_bench(tasks: Sequence[Any], optimizers: Sequence[str], *, policy_for: Callable[[Any], Any], reward: Any = None,
                    budget: int = 32, store: Store | None = None, success: float = 1.0, concurrency: int = 2,
                    on_result: Callable[[TaskResult], None] | None = None, tags: Sequence[str] = (),
                    graph_name: str | None = None, repeatable: bool = False, executor: Any = None,
                    transpositions: bool = True, only: Sequence[int] | None = None) -> list[TaskResult]:
    """Every optimizer on every task, `concurrency` searches at a time (each `repeatable`
    or not: see `trajgraph.search.optimize.asearch`). `executor` (e.g.
    `trajgraph.adapters.ray_executor.RayExecutor`) runs the searches elsewhere: it gets
    `search(task, name, store=...)` and the (task, name) jobs, and returns results in job order.
    `only`: the positions, in that job order (optimizer by optimizer, task by task), of the jobs
    this call runs; the others are another process's share (`trajgraph bench` splits the searches so)."""
    if budget <= 0:
        raise ConfigError(f"budget must be a positive number of policy calls, got {budget}")
    jobs = [(t, name) for name in optimizers for t in tasks]
    if only is not None:
        jobs = [jobs[i] for i in only]
    if executor is not None:
        search = functools.partial(run_one, policy_for=policy_for, reward=reward, budget=budget, success=success,
                                   tags=tags, graph_name=graph_name, repeatable=repeatable, transpositions=transpositions)
        return list(await executor.map(search, jobs, store=store, on_result=on_result))
    # a bench owns its event loop (asyncio.run(run_bench(...))): repeatable searches of sync
    # graphs may then step inline, without a thread hop per node (SearchSettings.inline)
    OWN_LOOP.set(True)
    sem = asyncio.Semaphore(max(1, concurrency))

    async def one(task: Any, name: str) -> TaskResult:
        async with sem:
            r = await run_one(task, name, policy_for=policy_for, reward=reward, budget=budget, store=store, success=success,
                              tags=tags, graph_name=graph_name, repeatable=repeatable, transpositions=transpositions)
        if on_result is not None:
            on_result(r)
        return r

    with model_threads_for(concurrency):  # the searches side by side share the cores; torch does not add its own
        return list(await asyncio.gather(*(one(t, name) for t, name in jobs)))


def summarise(results: Sequence[TaskResult], optimizers: Sequence[str]) -> list[Summary]:
    out = []
    for name in optimizers:
        rs = [r for r in results if r.optimizer == name]
        if not rs:
            continue
        wins = sum(r.success for r in rs)
        lo, hi = wilson(wins, len(rs))
        out.append(Summary(
            optimizer=name, tasks=len(rs), success_rate=wins / len(rs), ci_low=lo, ci_high=hi,
            mean_score=statistics.fmean(r.outcome or 0.0 for r in rs),
            policy_calls=statistics.fmean(r.policy_calls for r in rs),
            candidates_per_step=statistics.fmean(r.candidates_per_step for r in rs),
            env_steps=statistics.fmean(r.env_steps for r in rs), wall_s=statistics.fmean(r.wall_s for r in rs),
            overrun_policy_calls=statistics.fmean(r.overrun_policy_calls for r in rs),
            unfinished=sum(r.status != "succeeded" for r in rs),
        ))
    return out


def success_curves(results: Sequence[TaskResult], optimizers: Sequence[str], budget: int) -> dict[str, list[tuple[int, float]]]:
    """Success rate against calls actually spent, read off the full-budget runs: a task
    counts as solved at b when it was solved having spent at most b policy calls. Exact
    for searches that stop at the first success (best-of-n, MCTS); an estimate for the rest."""
    curves = {}
    points = sorted({max(1, round(budget * f)) for f in (0.125, 0.25, 0.5, 0.75, 1.0)})
    for name in optimizers:
        rs = [r for r in results if r.optimizer == name]
        if rs:
            curves[name] = [(b, sum(r.success and r.policy_calls <= b for r in rs) / len(rs)) for b in points]
    return curves


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: str, title: str) -> str | None:
    """Success vs budget as a PNG; returns None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("policy calls actually spent per task (solved within)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["OPTIMIZERS", "run_bench", "run_one", "summarise", "success_curves", "plot_curves", "wilson", "BenchReport", "TaskResult", "Summary", "parse_optimizers"]
