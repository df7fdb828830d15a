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

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.errors import GraphBubbleUp
from langgraph.pregel import Pregel

from trajgraph._instrument import Recorder, RecordingNode, locate
from trajgraph.trajectory import Step


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
        for name, node in g.nodes.items():
            bound = node.bound.bound if isinstance(node.bound, RecordingNode) else node.bound
            subgraphs = [s for s in node.subgraphs if isinstance(s, Pregel)]
            if isinstance(bound, Pregel) and not hidden:
                visit(bound, False)  # a subgraph added as a node: instrumented, but its nodes may call graphs
                continue
            for sub in subgraphs:
                names.add(name)
                visit(sub, True)

    visit(graph, False)
    return frozenset(names)


class NestedSteps(BaseCallbackHandler):
    """Records the tasks of graphs invoked inside the functions of `parents` nodes."""

    run_inline = True  # seq numbers in the order the tasks start
    ignore_llm = True
    ignore_chat_model = True
    ignore_agent = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self, recorder: Recorder, parents: frozenset[str]) -> None:
        self.recorder = recorder
        self.parents = parents
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
        ns = str(md.get("langgraph_checkpoint_ns") or "")
        if not node or "|" not in ns:
            return
        own = ns.rpartition("|")[2]
        if own in self._seen or own.partition(":")[0] != node:
            return
        self._seen.add(own)
        if ns.rpartition("|")[0].rpartition("|")[2].partition(":")[0] not in self.parents:
            return  # a swapped node's step: RecordingNode has it
        info = locate(self.recorder, md)
        self.recorder.nested_seqs[info[4]] = info[0]  # model calls inside belong to this step
        self._open[run_id] = (info, time.perf_counter(), str(node))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        opened = self._open.pop(run_id, None)
        if opened is not None:
            self._write(opened, update=outputs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        opened = self._open.pop(run_id, None)
        if opened is None:
            return
        if isinstance(error, GraphBubbleUp):
            self._write(opened, interrupted=True)
        else:
            self._write(opened, error=f"{type(error).__name__}: {error}")

    def _write(self, opened: tuple[tuple[Any, ...], float, str], **fields: Any) -> None:
        info, t0, node = opened
        seq, lg_step, path, namespace, task_id, started_at = info
        step = Step(
            run_id=self.recorder.run_id,
            seq=seq,
            node=node,
            lg_step=lg_step,
            path=path,
            namespace=namespace,
            task_id=task_id,
            started_at=started_at,
            latency_ms=(time.perf_counter() - t0) * 1000,
            **fields,
        )
        self.recorder.add_step(step)


__all__ = ["nested_graph_nodes", "NestedSteps"]
