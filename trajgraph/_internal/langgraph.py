"""The one seam to LangGraph internals that trajgraph relies on.

Recording swaps each node's runnable on a copy of the compiled graph, search
calls the decision node's runnable directly (k samples from one state), and
both re-type a compiled graph without re-running its constructor. None of that
is LangGraph's public API, so every such use lives here, where
`tests/test_langgraph_compat.py` pins it down and CI runs those tests against the
oldest LangGraph the project supports as well as the newest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.pregel import Pregel

from trajgraph.errors import GraphError

# Set by LangGraph in a subgraph's config when its parent resumes after an interrupt.
RESUMING_KEY = "__pregel_resuming"


def node_runnables(graph: Pregel) -> dict[str, Runnable[Any, Any]]:
    """Each node's own runnable (what the user passed to `add_node`), by node name."""
    return {name: node.bound for name, node in graph.nodes.items()}


def node_subgraphs(graph: Pregel, name: str) -> list[Any]:
    """The subgraphs LangGraph found inside node `name`."""
    return list(graph.nodes[name].subgraphs)


def with_node_runnables(graph: Pregel, replace: Mapping[str, tuple[Runnable[Any, Any], list[Any]]]) -> Pregel:
    """A copy of `graph` whose named nodes run other runnables; edges, routing, retry and
    cache policies stay as they are. `replace` maps a node to (runnable, its subgraphs)."""
    nodes = dict(graph.nodes)
    for name, (bound, subgraphs) in replace.items():
        nodes[name] = graph.nodes[name].copy({"bound": bound, "subgraphs": subgraphs})
    return Pregel.copy(graph, {"nodes": nodes})


def compiled_fields(graph: Pregel) -> dict[str, Any]:
    """The compiled graph's fields, to rebuild it as another Pregel subclass without recompiling."""
    return {k: v for k, v in graph.__dict__.items() if k != "__orig_class__"}


def retype(graph: Pregel, cls: type, **extra: Any) -> Any:
    """`graph` as an instance of `cls` (a Pregel subclass): same fields, no constructor run."""
    obj: Any = object.__new__(cls)
    obj.__dict__.update(graph.__dict__)
    obj.__dict__.update(extra)
    return obj


def compiled_graph(obj: Any, who: str) -> Pregel:
    """`obj` as a compiled graph: a compiled graph as it is, a StateGraph compiled.

    The one check of what users pass as a graph (`who` names the caller in the error).
    """
    if hasattr(obj, "compile") and not isinstance(obj, Pregel) and callable(obj.compile):
        obj = obj.compile()
    if not isinstance(obj, Pregel):
        raise GraphError(f"{who} needs a LangGraph StateGraph or compiled graph (call .compile() on a builder), got {type(obj).__name__}")
    return obj


def require_nodes(graph: Pregel, names: Any, what: str = "decision node") -> None:
    """Refuse node names the graph does not have, listing the ones it has."""
    unknown = [n for n in ([names] if isinstance(names, str) else names) if n not in graph.nodes]
    if unknown:
        shown = repr(unknown[0]) if len(unknown) == 1 else repr(unknown)
        raise GraphError(f"{what} {shown} not in graph; its nodes are {sorted(n for n in graph.nodes if not n.startswith('__'))}")


def _node_call(graph: Pregel, name: str, state: Mapping[str, Any], config: RunnableConfig, context: Any) -> tuple[Any, Any, RunnableConfig]:
    from langgraph._internal._constants import CONFIG_KEY_RUNTIME
    from langgraph.runtime import Runtime

    node = graph.nodes[name]
    channels = node.channels
    value: Any = {c: state[c] for c in channels if c in state} if isinstance(channels, list) else state.get(channels)
    if node.mapper is not None:
        value = node.mapper(value)
    configurable = {**config.get("configurable", {}), CONFIG_KEY_RUNTIME: Runtime(context=context, store=graph.store)}
    return node.bound, value, cast(RunnableConfig, {**config, "configurable": configurable})


def invoke_node(graph: Pregel, name: str, state: Mapping[str, Any], config: RunnableConfig, context: Any = None) -> Any:
    """`ainvoke_node` in the calling thread (no executor hop): for graphs whose nodes are all sync."""
    bound, value, cfg = _node_call(graph, name, state, config, context)
    return bound.invoke(value, cfg)


def sync_nodes(graph: Pregel) -> bool:
    """Whether every node of `graph` can run synchronously (a plain function, a ToolNode, a
    sync subgraph), so the graph can be stepped with `stream`/`update_state` in the calling
    thread instead of LangGraph's async path, which sends each sync node to a thread pool."""
    import inspect

    from langgraph._internal._runnable import RunnableCallable, RunnableSeq

    def ok(r: Any) -> bool:
        if isinstance(r, RunnableCallable):
            return r.func is not None and not inspect.iscoroutinefunction(r.func)
        if isinstance(r, RunnableSeq):
            return all(ok(step) for step in r.steps)
        if isinstance(r, Pregel):
            return sync_nodes(r)
        return False  # unknown: keep the async path

    return all(ok(bound) for name, bound in node_runnables(graph).items() if not name.startswith("__"))


async def ainvoke_node(graph: Pregel[Any, Any, Any, Any], name: str, state: Mapping[str, Any], config: RunnableConfig, context: Any = None) -> Any:
    """Run node `name` once on `state` as LangGraph would inside a step, without writing its output.

    The node reads its channels (through its input mapper, e.g. a pydantic state schema)
    and sees a `Runtime` with the given context and the graph's store.
    """
    from langgraph._internal._constants import CONFIG_KEY_RUNTIME
    from langgraph.runtime import Runtime

    node = graph.nodes[name]
    channels = node.channels
    value: Any = {c: state[c] for c in channels if c in state} if isinstance(channels, list) else state.get(channels)
    if node.mapper is not None:
        value = node.mapper(value)
    configurable = {**config.get("configurable", {}), CONFIG_KEY_RUNTIME: Runtime(context=context, store=graph.store)}
    return await node.bound.ainvoke(value, cast(RunnableConfig, {**config, "configurable": configurable}))


__all__ = [
    "RESUMING_KEY",
    "node_runnables",
    "node_subgraphs",
    "with_node_runnables",
    "compiled_fields",
    "retype",
    "ainvoke_node",
    "invoke_node",
    "sync_nodes",
    "compiled_graph",
    "require_nodes",
]
