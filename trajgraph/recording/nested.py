"""Steps of graphs that a node's own function invokes (`sub.invoke(...)` inside a node).

Node swapping (record.py) reaches the nodes LangGraph itself runs: the recorded
graph's and those of subgraphs added as nodes. A graph that a node's function
calls directly stays out of its reach (its object is the user's, captured in a
closure), but LangGraph hands it the run's config, callbacks included, so each of
its tasks announces itself as a chain event carrying its checkpoint namespace.
`NestedSteps` turns those events into steps of the same run. It is attached only
to graphs that have such a node: chain callbacks fire for every runnable, a cost
that node swapping exists to avoid.

A model call made inside belongs to the nested step it ran in. A cassette replay
cannot answer that step (nothing of trajgraph runs there), so it answers the
swapped node that called the graph, whole, and does not count the nested steps
it skipped as missing (replay.py).
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from langgraph.pregel import Pregel

from trajgraph._internal.langgraph import node_runnables, node_subgraphs
from trajgraph.recording._callbacks import RunHandler
from trajgraph.recording.instrument import Recorder, RecordingNode, locate, make_step, ns_parts


def nested_graph_nodes(graph: Pregel) -> frozenset[str]:
    """Names of nodes whose steps' children only callbacks can see.

    A function node that calls a graph (LangGraph lists it in `node.subgraphs`),
    and, inside such a graph, every node with a subgraph of its own: nothing in
    there was instrumented.
    """
    names: set[str] = set()
    seen: set[int] = set()

    def visit(g: Pregel, hidden: bool) -> None:
        if id(g) in seen:
            return
        seen.add(id(g))
        for name, own in node_runnables(g).items():
            bound = own.bound if isinstance(own, RecordingNode) else own
            subgraphs = [s for s in node_subgraphs(g, name) if isinstance(s, Pregel)]
            if isinstance(bound, Pregel) and not hidden:
                visit(bound, False)  # a subgraph added as a node: instrumented, but its nodes may call graphs
                continue
            for sub in subgraphs:
                names.add(name)
                visit(sub, True)

    visit(graph, False)
    return frozenset(names)


class NestedSteps(RunHandler):
    """Records the tasks of graphs invoked inside the functions of `recorder.nested_parents` nodes."""

    ignore_llm = True
    ignore_chat_model = True

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._seen: set[str] = set()  # task ids already opened (a task's inner runnables share its namespace)
        self._open: dict[UUID, tuple[tuple[Any, ...], float, str]] = {}

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        md = metadata or {}
        node = md.get("langgraph_node")
        parts = ns_parts(str(md.get("langgraph_checkpoint_ns") or ""))
        if not node or len(parts) < 2:
            return
        (parent, _), (own_node, own_task) = parts[-2:]
        if own_task in self._seen or own_node != node:
            return
        self._seen.add(own_task)
        if parent not in self.recorder.nested_parents:
            return  # a swapped node's step: RecordingNode has it
        info = locate(self.recorder, md)
        self.recorder.nested_seqs[info[4]] = info[0]  # model calls inside belong to this step
        self._open[run_id] = (info, time.perf_counter(), str(node))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, update=outputs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, exc=error)

    def _end(self, run_id: UUID, **outcome: Any) -> None:
        opened = self._open.pop(run_id, None)
        if opened is not None:
            info, t0, node = opened
            self.recorder.add_step(make_step(self.recorder, node, info, t0, **outcome))


__all__ = ["nested_graph_nodes", "NestedSteps"]
