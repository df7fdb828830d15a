"""Known-optimum suite: how often each optimizer reaches the exact optimum, and its mean gap.

Tasks whose optimum is computed, not assumed: generated key mazes
(trajgraph.testing.known_optimum: keys, traps, pits, dead ends, partial credit;
optimum by enumerating every state), the deceptive chain, FrozenLake 4x4 and
CliffWalking (optimum by value iteration; outcome 1.0 = the optimal return). The
proposer is the agent's own decision node, which samples with noise or a
misleading bias; the outcome is the only reward (no reward model). The budget is
`--multiple` x the task's solution length in policy calls. Searches are
repeatable, so the table is the same every run.

Run: python benchmarks/known_optimum.py [--tasks 20] [--multiple 20] [--label after]
     [--suites keymaze,chain] [--no-partial]  (outcome-only: the maze's partial credit withheld)
     [--state-key]  (maze, toy-text: state_key= the cell and key held, dropping turn, return and feedback text)
     [--mcts key=value ...]  (optimizer settings, to measure one change at a time)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import time
import zlib
from typing import Any

from _table import emit

from trajgraph.bench import OPTIMIZERS
from trajgraph.search.budget import Budget
from trajgraph.search.optimize import SearchSettings, search

_SETTINGS = {f.name for f in dataclasses.fields(SearchSettings)}


def _suites(n: int) -> list[tuple[str, list[Any], Any]]:
    """(label, tasks, node_for(task, seed)): the agent's own sampling decision node per task."""
    from trajgraph.adapters.gym_toytext import CliffWalkingSuite, FrozenLakeSuite
    from trajgraph.policies import SimulatedPolicy
    from trajgraph.testing.chain_suite import ChainSuite, NoisyOracle
    from trajgraph.testing.known_optimum import KeyMazeSuite, biased_node

    return [
        ("keymaze 5x4 (skill .35, lure .45)", KeyMazeSuite().tasks("test", n), lambda t, s: biased_node(t, seed=s)),
        ("chain depth 6 (skill .5, trap .3)", ChainSuite(6).tasks("test", n),
         lambda t, s: NoisyOracle(t, skill=0.5, trap=0.3, seed=s)),
        ("frozenlake 4x4 (skill .5, toy-text)", FrozenLakeSuite(size=4).tasks("test", n, seed=1),
         lambda t, s: SimulatedPolicy(skill=0.5, oracle=t.oracle, seed=s)),
        ("cliffwalking (skill .8, toy-text)", CliffWalkingSuite().tasks("test", max(1, n // 2), seed=1),
         lambda t, s: SimulatedPolicy(skill=0.8, oracle=t.oracle, seed=s)),
    ]


def solution_length(task: Any) -> int:
    """Decisions on the optimal trajectory (played by the task's oracle)."""
    graph, _ = task.make_graph(lambda state: {"action": task.oracle(state)})
    return len(graph.invoke(task.input, {"recursion_limit": 10_000}).get("history") or [])


def _cell(state: dict[str, Any]) -> Any:
    """The situation as a user who knows these tasks would key it: the cell (and the maze's key
    held); the running return, the turn counter and the feedback text are how it was reached."""
    return state.get("pos"), state.get("key")


def run(names: list[str], n: int, multiple: int, settings: dict[str, dict[str, Any]], suites: str = "",
        partial: bool = True, state_key: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    per_generation: dict[str, Any] = {}
    for label, tasks, node_for in _suites(n):
        if suites and not any(s in label for s in suites.split(",")):
            continue
        if not partial:
            label += " outcome-only"
        if state_key and "chain" not in label:
            label += ", state_key=cell"
        lengths = [solution_length(t) for t in tasks]
        for name in names:
            t0, hits, gaps, calls = time.perf_counter(), 0, 0.0, 0
            for task, length in zip(tasks, lengths):
                graph, env = task.make_graph(node_for(task, zlib.crc32(task.id.encode())))
                optimizer = OPTIMIZERS[name](**settings.get(name, {}))
                extra = {"partial": task.partial} if partial and hasattr(task, "partial") and "partial" in _SETTINGS else {}
                if state_key and "chain" not in label:
                    extra["state_key"] = _cell
                result = search(graph, task.input, decision_node=task.decision_node, optimizer=optimizer, outcome=task.outcome,
                                budget=Budget(policy_calls=multiple * length), environment=env, repeatable=True, **extra)
                best = float(getattr(task, "optimum", 1.0))
                got = result.outcome if result.outcome is not None else 0.0
                hits += got >= best - 1e-9
                gaps += best - got
                calls += result.spent.policy_calls
                if result.stats.get("fitness_per_generation"):
                    per_generation.setdefault(label, []).append(list(result.stats["fitness_per_generation"]))
            rows.append({"suite": label, "optimizer": name, "tasks": len(tasks), "budget": f"{multiple}x len ({sum(lengths) / len(lengths):.1f})",
                         "optimum reached": f"{hits / len(tasks):.0%}", "mean gap": round(gaps / len(tasks), 3),
                         "mean calls": round(calls / len(tasks)), "wall_s": round(time.perf_counter() - t0, 1)})
            print(rows[-1], flush=True)
    return rows, per_generation


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--multiple", type=int, default=20)
    ap.add_argument("--optimizers", default="greedy,best-of-n,rro,mcts,se-agent")
    ap.add_argument("--label", default="current")
    ap.add_argument("--suites", default="", help="comma-separated label prefixes (keymaze,chain,frozenlake,cliffwalking); all by default")
    ap.add_argument("--no-partial", action="store_true", help="outcome-only: do not give the search the partial outcome")
    ap.add_argument("--state-key", action="store_true", help="maze and toy-text: pass state_key= (the cell, and the key held) as a user who knows the task would")
    for name in ("rro", "mcts", "se-agent", "best-of-n"):
        ap.add_argument(f"--{name}", nargs="*", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    settings = {name: {kv.split("=", 1)[0]: ast.literal_eval(kv.split("=", 1)[1]) for kv in getattr(args, name.replace("-", "_"))}
                for name in ("rro", "mcts", "se-agent", "best-of-n")}
    rows, per_generation = run(args.optimizers.split(","), args.tasks, args.multiple, settings, args.suites, not args.no_partial, args.state_key)
    emit(f"known_optimum_{args.label}", f"known-optimum suite ({args.label}): optimum reached and mean gap, "
         f"budget {args.multiple}x solution length, repeatable", rows, {"settings": settings})
    if per_generation:
        # a search that stopped (it reached the optimum, or the budget ran out) keeps its last best
        # fitness in later generations, so the mean is over every search, not only the survivors
        gen_rows = []
        for suite, runs in per_generation.items():
            for g in range(max(len(r) for r in runs)):
                best = [r[min(g, len(r) - 1)] for r in runs]
                gen_rows.append({"suite": suite, "generation": g, "mean best fitness": round(sum(best) / len(best), 3),
                                 "still evolving": sum(len(r) > g + 1 for r in runs), "searches": len(runs)})
        emit(f"se_agent_generations_{args.label}", "SE-Agent: population's best fitness per generation "
             "(a stopped search keeps its last)", gen_rows)


if __name__ == "__main__":
    main()
