"""Branching cost: ms per branch-and-step (update_state at a decision point, then
run to the next one), per checkpoint backend, on a toy env-loop graph.

DESIGN.md's reference: about 1.5 ms per branch-and-step with SqliteSaver.
Run: python benchmarks/branching_cost.py [--branches 300]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _table import emit

from trajgraph.search.budget import Budget, BudgetMeter
from trajgraph.search.space import Space
from trajgraph.testing.chain import chain_start, deceptive_chain_graph


async def measure(checkpointer_name: str, branches: int) -> dict:
    graph = deceptive_chain_graph(depth=50, skill=1.0, trap=0.0, seed=0)
    tmp = tempfile.TemporaryDirectory()
    saver = None
    if checkpointer_name == "sqlite (aiosqlite, file)":
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        conn = await aiosqlite.connect(str(Path(tmp.name) / "ckpt.db"))
        saver = AsyncSqliteSaver(conn)
    space = Space(graph, "policy", meter=BudgetMeter(Budget(policy_calls=None)), checkpointer=saver)
    root = await space.root(chain_start())
    cands = await space.propose(root, 1)
    # warm-up
    for _ in range(10):
        await space.expand(root, cands[0])
    t0 = time.perf_counter()
    for _ in range(branches):
        await space.expand(root, cands[0])
    per = (time.perf_counter() - t0) / branches * 1000
    # a chain of branches (depth grows), which is what a search does
    node = root
    t0 = time.perf_counter()
    for _ in range(40):
        c = (await space.propose(node, 1))[0]
        node = await space.expand(node, c)
    chain = (time.perf_counter() - t0) / 40 * 1000
    if saver is not None:
        await conn.close()
    tmp.cleanup()
    return {"backend": checkpointer_name, "branches": branches, "ms_per_branch_from_root": per, "ms_per_propose_and_branch_deep": chain}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--branches", type=int, default=300)
    args = ap.parse_args()
    rows = [asyncio.run(measure(name, args.branches)) for name in ("memory (InMemorySaver)", "sqlite (aiosqlite, file)")]
    emit("branching_cost", "Branch-and-step cost on a toy env loop", rows)


if __name__ == "__main__":
    main()
