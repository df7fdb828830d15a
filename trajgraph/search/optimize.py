"""optimize(graph, ...): an agent whose action selection is a search.

`optimize` returns a compiled LangGraph graph with the agent's own input and
output keys: `invoke` it, `stream` it, or add it as a node of another graph.
Each call runs the optimizer over the agent's decision points (`trajgraph.search.space`)
within the budget, records the whole tree in the store, and returns the best
trajectory's final state. `search`/`asearch` run one search and return the details.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from trajgraph.search._write import TreeLog, write_search
from trajgraph.search.budget import LIMITS, Budget, BudgetExhausted, BudgetMeter, Spent
from trajgraph.errors import BudgetError, ConfigError
from trajgraph.search.optimizers.base import resolve_optimizer
from trajgraph.search.policy import as_policy
from trajgraph.search.space import Environment, Node, Space
from trajgraph.store import Store
from trajgraph.trajectory import Run, new_id


@dataclass
class SearchResult:
    """What one search found and spent."""

    best: Node
    state: dict[str, Any]
    outcome: float | None
    spent: Spent
    stats: dict[str, Any]
    nodes: int
    run_id: str | None = None
    rollout_ids: list[str] = field(default_factory=list)
    space: Space | None = None


async def asearch(
    graph: Any,
    input: Any,
    *,
    decision_node: str,
    optimizer: Any = None,
    reward: Any = None,
    outcome: Callable[[dict[str, Any]], float | None] | None = None,
    budget: Budget | None = None,
    store: Store | str | None = None,
    policy: Any = None,
    environment: Environment | None = None,
    name: str | None = None,
    task: str | None = None,
    tags: Sequence[str] = (),
    context: Any = None,
    checkpointer: Any = None,
    metadata: dict[str, Any] | None = None,
    repeatable: bool = False,
) -> SearchResult:
    """Run one search on one input; record it when a store is given.

    repeatable=True runs an optimizer's branches, and the k samples of the agent's
    own decision node, one after another instead of concurrently (see
    `Space.gather`): slower with a remote model, but the same seed then gives the
    same search.
    """
    optimizer = resolve_optimizer(optimizer)
    meter = BudgetMeter(budget or Budget())
    if getattr(optimizer, "open_ended", False) and not meter.budget.limited:
        raise BudgetError(f"{type(optimizer).__name__} searches until the budget is spent, and this Budget has no limit; "
                          f"set {', '.join(LIMITS[:-1])} or {LIMITS[-1]}")
    space = Space(graph, decision_node, outcome=outcome, reward=reward, policy=as_policy(policy),
                  environment=environment, meter=meter, context=context, checkpointer=checkpointer, repeatable=repeatable)
    store = Store(store) if isinstance(store, str) else store
    graph_name = name or getattr(graph, "name", None) or "graph"
    run = Run(id=new_id(), graph=str(graph_name), kind="search", input=input, task=task, tags=tuple(tags),
              metadata={"optimizer": getattr(optimizer, "name", type(optimizer).__name__), "optimizer_config": repr(optimizer),
                        "budget": repr(meter.budget), **(metadata or {})})
    # the store opens its file and commits off the event loop (SQLite blocks): a search served
    # by LangGraph Server must not stall every other request while it writes
    if store is not None:
        await asyncio.to_thread(store.add_run, run)
    log = TreeLog()
    best: Node | None = None
    try:
        root = await space.root(input)
        try:
            best = await optimizer.search(space, root, log)
        except BudgetExhausted:
            best = space.best_terminal() or _best_frontier(space, root)
        if not best.terminal and meter.budget.finish:
            meter.unlimited = True  # finish the chosen trajectory; reported as an overrun
            best = await space.rollout(best)
        spent = meter.report()
        result = SearchResult(best=best, state=best.state, outcome=best.outcome, spent=spent, stats=dict(log.stats),
                              nodes=len(space.nodes), run_id=run.id if store else None, space=space)
    except BaseException as exc:
        if store is not None:
            await asyncio.to_thread(_write, store, space, run, log, best, task, status="failed",
                                    error=f"{type(exc).__name__}: {exc}", meter=meter)
        raise
    if store is not None:
        result.rollout_ids = await asyncio.to_thread(_write, store, space, run, log, best, task, status="succeeded", meter=meter)
    return result


def search(graph: Any, input: Any, **kwargs: Any) -> SearchResult:
    """Synchronous `asearch`."""
    return _run_sync(asearch(graph, input, **kwargs))


def _write(store: Store, space: Space, run: Run, log: TreeLog, best: Node | None, task: str | None, *,
           status: str, meter: BudgetMeter, error: str | None = None) -> list[str]:
    ids = write_search(store, space, run, log, best, task)
    stats = {k: v for k, v in log.stats.items() if not isinstance(v, list)}
    store.update_run(run.id, status=status, error=error, ended_at=time.time(),
                     output=None if best is None else best.state, outcome=None if best is None else best.outcome,
                     metadata={**run.metadata, "spent": meter.report().to_dict(), "stats": stats, "nodes": len(space.nodes)})
    return ids


def _best_frontier(space: Space, root: Node) -> Node:
    open_nodes = [n for n in space.nodes if not n.terminal and not n.invalid]
    if not open_nodes:
        return root
    return max(open_nodes, key=lambda n: (n.value if n.value is not None else (n.score or 0.0), n.depth, -n.id))


def _run_sync(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from inside a running loop
        return pool.submit(asyncio.run, coro).result()


def _plain_schema(graph: Any, schema: Any, name: str) -> type:
    """The schema's keys with no reducers: the search returns whole final values."""
    try:
        hints = typing.get_type_hints(schema, include_extras=False)
    except Exception:
        hints = {}
    if not hints and hasattr(schema, "model_fields"):
        hints = {k: Any for k in schema.model_fields}
    keys = [k for k in hints if k in graph.channels] or [k for k in graph.channels if not k.startswith(("__", "branch:"))]
    return TypedDict(name, {k: Any for k in keys}, total=False)  # type: ignore[operator]


def optimize(
    graph: Any,
    *,
    decision_node: str,
    optimizer: Any = None,
    reward: Any = None,
    outcome: Callable[[dict[str, Any]], float | None] | None = None,
    budget: Budget | None = None,
    store: Store | str | None = None,
    policy: Any = None,
    environment: Environment | None = None,
    name: str | None = None,
    task: Callable[[Any], str | None] | None = None,
    tags: Sequence[str] = (),
    repeatable: bool = False,
) -> Any:
    """Wrap an agent so that every call searches its decision points.

    graph: a compiled graph or a `StateGraph` builder. decision_node: the node that
    chooses actions ("agent" for create_react_agent, "model" for create_agent).
    optimizer: tg.MCTS() by default; tg.RRO(), tg.SEAgent(), tg.BestOfN(), tg.Greedy(),
    or one of their names ("rro", "se-agent", ...) for its defaults.
    reward: scores unfinished states (a reward model, tg.LLMJudge, tg.RolloutValue(n),
    or a function of the state). outcome(state): final reward of a finished state.
    policy: None = the agent's own decision node; or a litellm model string, a chat
    model, or an object with `propose(state, k)`. repeatable: branches one after
    another, so a fixed seed gives the same search (see `asearch`).
    """
    from langgraph.pregel import Pregel

    compiled = graph.compile() if isinstance(graph, StateGraph) else graph
    if not isinstance(compiled, Pregel):
        raise ConfigError(f"optimize() needs a LangGraph StateGraph or compiled graph, got {type(graph).__name__}")
    if decision_node not in compiled.nodes:
        raise ConfigError(f"decision node {decision_node!r} is not in the graph; its nodes are {sorted(n for n in compiled.nodes if not n.startswith('__'))}")
    agent_name = name or compiled.get_name() or "agent"
    store = Store(store) if isinstance(store, str) else store
    kwargs = dict(decision_node=decision_node, optimizer=resolve_optimizer(optimizer), reward=reward, outcome=outcome, budget=budget,
                  store=store, policy=policy, environment=environment, name=agent_name, tags=tags, repeatable=repeatable)

    builder: Any = getattr(compiled, "builder", None)
    state_schema = getattr(builder, "state_schema", None)
    plain: Any = _plain_schema(compiled, state_schema, f"{agent_name}_state") if state_schema else dict
    input_schema = _plain_schema(compiled, builder.input_schema, f"{agent_name}_input") if state_schema else plain
    output_schema = _plain_schema(compiled, builder.output_schema, f"{agent_name}_output") if state_schema else plain

    async def run_search(state: dict[str, Any]) -> dict[str, Any]:
        result = await asearch(compiled, dict(state), task=task(state) if task else None, **kwargs)
        return dict(result.state)

    def run_search_sync(state: dict[str, Any]) -> dict[str, Any]:
        return _run_sync(run_search(state))

    from langchain_core.runnables import RunnableLambda

    wrapper: StateGraph[Any, Any, Any, Any] = StateGraph(plain, input_schema=input_schema, output_schema=output_schema)
    wrapper.add_node("search", RunnableLambda(run_search_sync, afunc=run_search, name="search"))  # type: ignore[type-var]  # LangGraph wants a schema type; the state is a plain dict here
    wrapper.add_edge(START, "search")
    wrapper.add_edge("search", END)
    return wrapper.compile(name=f"optimized_{agent_name}")


__all__ = ["optimize", "search", "asearch", "SearchResult"]
