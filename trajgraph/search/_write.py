"""Writes a finished search to the store: the tree, its trajectories and its pairs.
(`TreeLog`, what optimizers record, is public: trajgraph/search/tree.py.)"""

from __future__ import annotations

import time
from typing import Any

from trajgraph.render import render_action
from trajgraph.search.space import Space
from trajgraph.search.tree import Candidate, Node, TreeLog
from trajgraph.store import Store
from trajgraph.trajectory import PreferencePair, Run, SearchNode, Step, new_id


def _action_of(x: Node | Candidate) -> tuple[Any, str, int | None]:
    if isinstance(x, Node):
        return x.action, x.action_text or render_action(x.action), x.id
    return x.action, x.text, None


def write_search(store: Store, space: Space, search_run: Run, log: TreeLog, best: Node | None, task: str | None) -> list[str]:
    """Store every node, every finished trajectory (as a rollout run) and every pair."""
    if best is not None:
        for n in best.path():
            n.chosen = True
    rows = [
        SearchNode(
            run_id=search_run.id, id=n.id, parent_id=None if n.parent is None else n.parent.id, depth=n.depth,
            action=n.action, action_text=n.action_text, observation=n.observation, score=n.score, value=n.value,
            visits=n.visits, outcome=n.outcome, terminal=n.terminal, chosen=n.chosen, invalid=n.invalid, reason=n.reason,
        )
        for n in space.nodes
    ]
    runs, steps = [], []
    rollout_ids = []
    for leaf in space.nodes:
        if not leaf.terminal or leaf.invalid:
            continue
        run = Run(
            id=new_id(), graph=search_run.graph, graph_path=search_run.graph_path, kind="rollout", status="succeeded",
            input=search_run.input, output=leaf.state, outcome=leaf.outcome, task=task, parent_id=search_run.id,
            tags=("best",) if leaf is best else (), metadata={"search_node": leaf.id, "optimizer": search_run.metadata.get("optimizer")},
            started_at=search_run.started_at, ended_at=time.time(),
        )
        runs.append(run)
        rollout_ids.append(run.id)
        seq = 0
        for n in leaf.path()[1:]:
            for name, update in n.steps:
                steps.append(Step(run_id=run.id, seq=seq, node=name, update=update,
                                  action=update if name == space.decision_node else None,
                                  reward=n.outcome if (n.terminal and name != space.decision_node) else None))
                seq += 1
    pairs = []
    for p in log.pairs:
        at: Node = p["at"]
        ca, ct, cn = _action_of(p["chosen"])
        ra, rt, rn = _action_of(p["rejected"])
        pairs.append(PreferencePair(
            run_id=search_run.id, source=p["source"], prompt={"task": space.task_text, "history": [list(t) for t in at.turns()]},
            chosen={"action": ca, "text": ct}, rejected={"action": ra, "text": rt}, chosen_score=p["chosen_score"],
            rejected_score=p["rejected_score"], node_id=at.id, chosen_node=cn, rejected_node=rn, task=task,
        ))
    store.write(runs=runs, steps=steps, search_nodes=rows, pairs=pairs)
    return rollout_ids


__all__ = ["TreeLog", "write_search"]
