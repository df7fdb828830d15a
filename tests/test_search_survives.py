"""A search survives its process (issue 11.2): the tree and finished rollouts are written
as the search goes, so kill -9 mid-search leaves them, and the run reads as interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import trajgraph as tg

CHILD = textwrap.dedent("""
    import asyncio, sys
    sys.path.insert(0, {root!r})
    import trajgraph as tg
    from tests._search_helpers import line_graph, line_start

    class Slow:
        name = "slow"
        n = 0
        async def propose(self, state, k):
            await asyncio.sleep(0.02)
            Slow.n += 1
            return [{{"action": ("forward", "back", "wait")[(Slow.n + i) % 3]}} for i in range(k)]

    tg.search(line_graph(goal=30, max_turns=8), line_start(), decision_node="policy", optimizer=tg.MCTS(k=3),
              policy=Slow(), budget=tg.Budget(policy_calls=100000), store={db!r}, task="long")
""")


def test_kill_9_mid_search_leaves_the_tree_so_far_and_an_interrupted_run(tmp_path: Path):
    db = tmp_path / "runs.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(Path(__file__).resolve().parents[1]), db=str(db)))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        nodes, rollouts = 0, 0
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.3)
            if not db.exists():
                continue
            store = tg.Store(db)
            searches = store.runs(kind="search")
            if searches:
                nodes = len(store.search_nodes(searches[0].id))
                rollouts = len(store.runs(kind="rollout", parent_id=searches[0].id))
                if nodes >= 20 and rollouts >= 2:
                    break
        assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
        assert nodes >= 20 and rollouts >= 2, (nodes, rollouts)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    store = tg.Store(db)
    (search,) = store.runs(kind="search")
    assert search.status == "interrupted" and "interrupted" in (search.error or "")
    kept = store.search_nodes(search.id)
    assert len(kept) >= nodes and kept[0].id == 0 and kept[0].parent_id is None
    ids = {n.id for n in kept}
    assert all(n.parent_id in ids for n in kept if n.parent_id is not None)  # a tree, not loose rows
    for rollout in store.runs(kind="rollout", parent_id=search.id):
        steps = store.steps(rollout.id)
        assert steps and steps[-1].reward == rollout.outcome  # each streamed rollout is whole


def test_sigterm_mid_search_writes_the_tree_and_ends_the_run_interrupted(tmp_path: Path):
    db = tmp_path / "runs.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(Path(__file__).resolve().parents[1]), db=str(db)))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.3)
            if db.exists():
                searches = tg.Store(db).runs(kind="search")
                if searches and len(tg.Store(db).search_nodes(searches[0].id)) >= 10:
                    break
        assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == -signal.SIGTERM  # it still dies by SIGTERM, after saving
    finally:
        if child.poll() is None:
            child.kill()
    store = tg.Store(db)
    (search,) = store.runs(kind="search")
    assert search.error is not None
    assert search.status == "interrupted" and search.error.startswith("interrupted: the search was stopped")
    assert search.metadata["spent"]["policy_calls"] > 0  # the search's own final write, not a liveness guess
    nodes = store.search_nodes(search.id)
    assert len(nodes) >= 10 and len(nodes) == search.metadata["nodes"]  # the whole tree as the search held it
