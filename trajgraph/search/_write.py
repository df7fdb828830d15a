"""Writes a search to the store: the tree, its trajectories and its pairs.

As the search goes (`SearchRecorder`), each node and each finished trajectory is
handed to the store's batched writer (trajgraph/store/writer.py), so a search
killed mid-way (kill -9, a lost machine) leaves the tree so far and its finished
rollouts, and the run itself reads as interrupted on the next open (the store's
liveness check). At the end, `write_search` writes the final tree (scores,
values, visits, the chosen path) over those rows, with the same rollout ids, and
the pairs. (`TreeLog`, what optimizers record, is public: `tree.py`.)
"""

from __future__ import annotations

import time
from typing import Any

from trajgraph.render import render_action
from trajgraph.search.space import Space
from trajgraph.search.tree import Candidate, Node, TreeLog
from trajgraph.store import Store
from trajgraph.trajectory import PreferencePair, Run, SearchNode, Step, new_id


class SearchRecorder:
    """Streams a running search's nodes and finished rollouts through the store's writer."""

    def __init__(self, store: Store, search_run: Run, decision_node: str, task: str | None) -> None:
        from trajgraph.store.writer import writer_for

        self.store, self.run, self.decision_node, self.task = store, search_run, decision_node, task
        self.writer = writer_for(store)
        self.rollout_ids: dict[int, str] = {}  # leaf node id -> its rollout run id (stable across writes)

    def __call__(self, node: Node) -> None:
        """A node is complete (the space calls this once per node)."""
        self.writer.put("search_node", node_row(self.run, node))
        if node.terminal and not node.invalid:
            run, steps = rollout_rows(self.run, node, self.decision_node, self.task, self.rollout_id(node), best=False)
            self.writer.put("run", run)
            for step in steps:
                self.writer.put("step", step)

    def rollout_id(self, leaf: Node) -> str:
        return self.rollout_ids.setdefault(leaf.id, new_id())

    def settle(self) -> None:
        """Wait for the streamed rows, so the final write is not overwritten by stale ones."""
        self.writer.flush(run_id=self.run.id)


def _action_of(x: Node | Candidate) -> tuple[Any, str, int | None]:
    if isinstance(x, Node):
        return x.action, x.action_text or render_action(x.action), x.id
    return x.action, x.text, None


def node_row(search_run: Run, n: Node) -> SearchNode:
    return SearchNode(
        run_id=search_run.id, id=n.id, parent_id=None if n.parent is None else n.parent.id, depth=n.depth,
        action=n.action, action_text=n.action_text, observation=n.observation, score=n.score, value=n.value,
        visits=n.visits, outcome=n.outcome, terminal=n.terminal, chosen=n.chosen, invalid=n.invalid, reason=n.reason,
    )


def rollout_rows(search_run: Run, leaf: Node, decision_node: str, task: str | None, run_id: str, *, best: bool) -> tuple[Run, list[Step]]:
    """A finished trajectory as a Run(kind="rollout") and its steps (decision steps carry `action`)."""
    run = Run(
        id=run_id, graph=search_run.graph, graph_path=search_run.graph_path, kind="rollout", status="succeeded",
        input=search_run.input, output=leaf.state, outcome=leaf.outcome, task=task, parent_id=search_run.id,
        tags=("best",) if best else (), metadata={"search_node": leaf.id, "optimizer": search_run.metadata.get("optimizer")},
        started_at=search_run.started_at, ended_at=time.time(),
    )
    steps, seq = [], 0
    for n in leaf.path():  # the root's steps too: what ran before the first decision (a reset node) builds its state
        for name, update in n.steps:
            steps.append(Step(run_id=run.id, seq=seq, node=name, update=update,
                              action=update if name == decision_node else None,
                              reward=n.outcome if (n.terminal and name != decision_node) else None))
            seq += 1
    return run, steps


def write_search(store: Store, space: Space, search_run: Run, log: TreeLog, best: Node | None, task: str | None,
                 recorder: SearchRecorder | None = None) -> list[str]:
    """Store every node, every finished trajectory (as a rollout run) and every pair."""
    if recorder is not None:
        recorder.settle()
    if best is not None:
        for n in best.path():
            n.chosen = True
    rows = [node_row(search_run, n) for n in space.nodes]
    runs, steps = [], []
    rollout_ids = []
    for leaf in space.nodes:
        if not leaf.terminal or leaf.invalid:
            continue
        run_id = recorder.rollout_id(leaf) if recorder is not None else new_id()
        run, leaf_steps = rollout_rows(search_run, leaf, space.decision_node, task, run_id, best=leaf is best)
        runs.append(run)
        steps += leaf_steps
        rollout_ids.append(run.id)
    pairs = []
    for p in log.pairs:
        at: Node = p["at"]
        ca, ct, cn = _action_of(p["chosen"])
        ra, rt, rn = _action_of(p["rejected"])
        pairs.append(PreferencePair(
            run_id=search_run.id, source=p["source"], prompt={"task": space.task_text, "history": [list(t) for t in at.turns()], "state": at.state},
            chosen={"action": ca, "text": ct}, rejected={"action": ra, "text": rt}, chosen_score=p["chosen_score"],
            rejected_score=p["rejected_score"], node_id=at.id, chosen_node=cn, rejected_node=rn, task=task,
        ))
    store.write(runs=runs, steps=steps, search_nodes=rows, pairs=pairs)
    return rollout_ids


__all__ = ["TreeLog", "SearchRecorder", "write_search", "node_row", "rollout_rows"]
