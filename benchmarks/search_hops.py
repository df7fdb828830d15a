"""Thread hops in a search: the same repeatable searches through LangGraph's async path
(each sync node handed to a thread pool, the MiniLM policy through asyncio.to_thread)
and inline (the graph and an in-process policy stepped in the calling thread).

Both paths find the same trees (tests/test_search_inline.py); this prints what they
cost: CPU seconds and wall seconds for the whole workload, best of `--repeats`.
Run: python benchmarks/search_hops.py [--tasks 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import zlib

from _table import emit

import trajgraph as tg
from trajgraph.bench import OPTIMIZERS


def _workload(suite, policy_for, budget: int, inline: bool, n: int) -> tuple[float, float, int]:
    tasks = suite.tasks("test", n, 0)

    async def go() -> int:
        nodes = 0
        for name in OPTIMIZERS:
            for task in tasks:
                agent = policy_for(task)
                graph, env = task.make_graph(agent)
                r = await tg.asearch(graph, task.input, decision_node=task.decision_node, optimizer=OPTIMIZERS[name](),
                                     outcome=task.outcome, budget=tg.Budget(policy_calls=budget), environment=env,
                                     policy=agent if hasattr(agent, "propose") else None, repeatable=True, inline=inline)
                nodes += r.nodes
        return nodes

    c0, t0 = time.process_time(), time.perf_counter()
    nodes = asyncio.run(go())
    return time.process_time() - c0, time.perf_counter() - t0, nodes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from trajgraph.adapters.gym_toytext import FrozenLakeSuite
    from trajgraph.policies import SimulatedPolicy
    from trajgraph.testing.chain_suite import ChainSuite, NoisyOracle

    cases = [("chain (depth 5), noisy oracle", ChainSuite(5), lambda t: NoisyOracle(t, skill=0.6, seed=zlib.crc32(t.id.encode())), 32),
             ("frozenlake 4x4, simulated policy", FrozenLakeSuite(size=4),
              lambda t: SimulatedPolicy(skill=0.5, oracle=t.oracle, seed=zlib.crc32(t.id.encode())), 32)]
    try:
        from trajgraph.policies import minilm_policy

        shared = minilm_policy(seed=0)
        cases.append(("frozenlake 4x4, MiniLM ranker", FrozenLakeSuite(size=4), lambda t: shared.view(), 32))
    except Exception as exc:  # the encoder package is an extra
        print(f"MiniLM row skipped: {type(exc).__name__}: {exc}")
    rows = []
    for label, suite, policy_for, budget in cases:
        best: dict[bool, tuple[float, float, int]] = {}
        for _ in range(args.repeats):
            for inline in (False, True):
                cpu, wall, nodes = _workload(suite, policy_for, budget, inline, args.tasks)
                if inline not in best or cpu < best[inline][0]:
                    best[inline] = (cpu, wall, nodes)
        (ac, aw, an), (ic, iw, inn) = best[False], best[True]
        rows.append({"workload": f"{label}, 5 optimizers x {args.tasks} tasks, budget {budget}", "nodes": f"{an} / {inn}",
                     "async CPU s": round(ac, 2), "inline CPU s": round(ic, 2), "CPU saved": f"{1 - ic / ac:.0%}",
                     "async wall s": round(aw, 2), "inline wall s": round(iw, 2)})
    emit("search_hops", f"repeatable searches, async path vs inline (best of {args.repeats})", rows)


if __name__ == "__main__":
    main()
