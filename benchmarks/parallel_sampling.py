"""Parallel sampling: with a fake model of fixed latency L, k=8 candidates from
one decision point should take about one L of wall time (target <= 1.3 L).

Measures the default path (the agent's own decision node run k times) and a
LangChain chat-model policy, on the prebuilt ReAct agent.
Run: python benchmarks/parallel_sampling.py [--latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _table import emit

from trajgraph.search.budget import Budget, BudgetMeter
from trajgraph.search.policy import ChatModelPolicy
from trajgraph.search.space import Space
from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent


async def measure(latency: float, k: int, via: str, repeats: int = 5) -> dict:
    model = ScriptedToolModel(script=[[fake_tool_call("add", a=i, b=1)] for i in range(16)], latency_s=latency)
    policy = ChatModelPolicy(model) if via == "chat-model policy" else None
    space = Space(react_calculator_agent(model), "agent", policy=policy, meter=BudgetMeter(Budget(policy_calls=None)))
    root = await space.root({"messages": [("user", "add things")]})
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        cands = await space.propose(root, k)
        walls.append(time.perf_counter() - t0)
    wall = min(walls)
    return {"via": via, "k": k, "latency_s": latency, "wall_s": wall, "wall_over_latency": wall / latency,
            "distinct_candidates": len(cands), "target_met": wall <= 1.3 * latency}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    rows = []
    for via in ("agent's own node", "chat-model policy"):
        for k in (1, 8, 16):
            rows.append(asyncio.run(measure(args.latency, k, via)))
    emit("parallel_sampling", f"k candidates at one decision point, model latency {args.latency}s", rows)


if __name__ == "__main__":
    main()
