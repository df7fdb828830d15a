"""optimize(graph, ...): an agent whose action selection is a search.

`optimize` returns a compiled LangGraph graph with the agent's own input and
output keys: `invoke` it, `stream` it, or add it as a node of another graph.
Each call runs the optimizer over the agent's decision points (`trajgraph.search.space`)
within the budget, records the whole tree in the store, and returns the best
trajectory's final state. `search`/`asearch` run one search and return the details.

All three take the same settings, defined once (`SearchSettings`): pass them as
keywords, or build a `SearchSettings` and pass `settings=`.

What the driver guarantees around any optimizer:
- a budget is a bound: calls stop at `Budget.policy_calls`, tokens, env steps, and
  at the wall-time limit in-flight calls are cancelled;
- the answer is a real answer: an invalid or unfinished node never wins over a
  valid finished one; with none, the best open trajectory is finished greedily
  inside the budget, and if that cannot complete the search ends `unfinished`
  (`SearchResult.status`, the run's status in the store) and says how far it got
  (`SearchResult.finish`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

from langgraph.graph import END, START, StateGraph

from trajgraph._internal.aio import OWN_LOOP, run_sync
from trajgraph._internal.langgraph import compiled_graph, require_nodes
from trajgraph.errors import BudgetError, ConfigError
from trajgraph.recording import signals
from trajgraph.search._write import SearchRecorder, write_search
from trajgraph.search.budget import LIMITS, Budget, BudgetExhausted, BudgetMeter, Spent
from trajgraph.search.optimizers.base import Optimizer, resolve_optimizer
from trajgraph.search.policy import as_policy
from trajgraph.search.space import Environment, Node, Space
from trajgraph.search.tree import Outcome, TreeLog
from trajgraph.store import Store
from trajgraph.trajectory import Run, new_id

T = TypeVar("T")


@dataclass(frozen=True)
class SearchSettings:
    """How a search runs; the one definition behind `optimize`, `search` and `asearch`.

    decision_node: the node that chooses actions ("agent" for create_react_agent,
    "model" for create_agent). optimizer: tg.MCTS() by default; tg.RRO(), tg.SEAgent(),
    tg.BestOfN(), tg.Greedy(), any `tg.Optimizer`, or a name ("rro", "se-agent", ...).
    reward: scores unfinished states (a reward model, tg.LLMJudge, tg.RolloutValue(n),
    or a function of the state; see `as_reward`). outcome(state): final reward of a
    finished state. budget: tg.Budget (64 policy calls by default). store: a tg.Store
    or a path. policy: None = the agent's own decision node; or a litellm model string,
    a chat model, or an object with `propose(state, k)`. environment: state outside
    the graph that forks by snapshot()/restore(). name, tags: the recorded run's.
    context, checkpointer: LangGraph's. repeatable: branches one after another, so a
    fixed seed gives the same search (see `Space.gather`). actions_key: the state key
    listing admissible actions, checked before an action is tried (None: no check).
    max_depth: decisions after which a trajectory counts as finished. inline: step the
    graph and an in-process policy (its `propose_inline(state, k)`) in the calling
    thread, with no thread-pool hop per node; None (default) does so for repeatable
    searches of sync graphs on trajgraph's own checkpointer, when the search runs on an
    event loop of its own (`search()`, an optimized agent's `invoke`), never when `asearch`
    is awaited on another (a server's). Inline steps block the event loop and are not cancelled mid-step at the wall-time limit (the limit is
    checked between steps). state_key(state): which situation a decision state is
    (default: learned from the tree, see search/_situation.py: no path, the running
    score compared rather than keyed, step counters left to the depth, an in-graph
    environment's observation left out); pass one to say it yourself. transpositions: share what is known about a state
    reached by two paths, never expand the same action twice (False for stochastic
    environments). partial(state): the environment's partial outcome of an
    unfinished state, used to value open nodes when there is no reward model.
    """

    decision_node: str
    optimizer: Any = None
    reward: Any = None
    outcome: Outcome | None = None
    budget: Budget | None = None
    store: Store | str | None = None
    policy: Any = None
    environment: Environment | None = None
    name: str | None = None
    tags: Sequence[str] = ()
    context: Any = None
    checkpointer: Any = None
    repeatable: bool = False
    actions_key: str | None = "actions"
    max_depth: int = 100
    inline: bool | None = None
    state_key: Callable[[dict[str, Any]], Any] | None = None
    transpositions: bool = True
    partial: Outcome | None = None

    @classmethod
    def of(cls, settings: SearchSettings | None, options: dict[str, Any]) -> SearchSettings:
        """`settings` with `options` (keywords) applied on top; unknown keywords refused."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ConfigError(f"unknown search setting {', '.join(unknown)}; the settings are {', '.join(names)}")
        if settings is not None:
            return dataclasses.replace(settings, **options)
        if "decision_node" not in options:
            raise ConfigError("a search needs decision_node=, the node that chooses actions (e.g. 'agent')")
        return cls(**options)


@dataclass
class SearchResult:
    """What one search found and spent.

    status: "succeeded" when `best` is a valid finished trajectory, "unfinished" when
    the search (and the greedy finish within the budget) ended without one.
    finish: how the answer was completed, when the search stopped before one finished.
    """

    best: Node
    state: dict[str, Any]
    outcome: float | None
    spent: Spent
    stats: dict[str, Any]
    nodes: int
    run_id: str | None = None
    rollout_ids: list[str] = field(default_factory=list)
    space: Space | None = None
    status: str = "succeeded"
    finish: str = ""

    @property
    def finished(self) -> bool:
        return self.status == "succeeded"

    def summary(self) -> dict[str, Any]:
        """JSON-ready: what `optimize(..., result_key=)` puts in the output and streams."""
        return {"run_id": self.run_id, "status": self.status, "outcome": self.outcome, "finish": self.finish,
                "spent": self.spent.to_dict(), "nodes": self.nodes,
                "stats": {k: v for k, v in self.stats.items() if isinstance(v, (int, float, str, bool))}}


async def asearch(graph: Any, input: Any, *, task: str | None = None, metadata: dict[str, Any] | None = None,
                  settings: SearchSettings | None = None, **options: Any) -> SearchResult:
    """Run one search on one input; record it when a store is given.

    The settings (`SearchSettings`) come as keywords or as `settings=`. task: the task
    id recorded with the search and its rollouts; metadata: extra run metadata.
    """
    s = SearchSettings.of(settings, options)
    optimizer = resolve_optimizer(s.optimizer)
    budget = s.budget or Budget()
    if optimizer.open_ended and not budget.limited:
        raise BudgetError(f"{type(optimizer).__name__} searches until the budget is spent, and this Budget has no limit; "
                          f"set {', '.join(LIMITS[:-1])} or {LIMITS[-1]}")
    meter = BudgetMeter(budget)
    space = Space(graph, s.decision_node, outcome=s.outcome, reward=s.reward, policy=as_policy(s.policy),
                  environment=s.environment, meter=meter, context=s.context, checkpointer=s.checkpointer,
                  repeatable=s.repeatable, actions_key=s.actions_key, max_depth=s.max_depth, inline=_inline(s.inline),
                  state_key=s.state_key, transpositions=s.transpositions, partial=s.partial)
    store = Store(s.store) if isinstance(s.store, str) else s.store
    graph_name = s.name or getattr(graph, "name", None) or "graph"
    run = Run(id=new_id(), graph=str(graph_name), kind="search", input=input, task=task, tags=tuple(s.tags),
              metadata={"optimizer": optimizer.name, "optimizer_config": repr(optimizer), "budget": repr(budget), **(metadata or {})})
    # the store opens its file and commits off the event loop (SQLite blocks): a search served
    # by LangGraph Server must not stall every other request while it writes
    recorder: SearchRecorder | None = None
    if store is not None:
        await asyncio.to_thread(store.add_run, run)
        recorder = space.on_node = SearchRecorder(store, run, s.decision_node, task)  # the tree as it grows
        session = _Session(run, recorder)
        signals.enter(session)  # SIGTERM now stops the search like Ctrl-C (main thread, default handler only)
    log = TreeLog()
    best: Node | None = None
    try:
        returned = await _bounded(meter, _explore(optimizer, space, input, log))
        if not space.nodes:
            raise BudgetError(f"the budget ({meter.spent.stopped_by}) ran out before the graph reached its first decision point")
        best = _settle(space, returned)
        log.stats.update(merged_states=space.merged, reused_expansions=space.reused, cached_scores=space.cached_scores,
                         diverted_rollout_steps=space.diverted)
        finish = ""
        if not best.terminal:
            best, finish = await _finish(space, best, meter) if budget.finish else (best, "unfinished: Budget(finish=False) skips the greedy finish")
        status = "succeeded" if best.terminal and not best.invalid else "unfinished"
        log.stats["finish"] = finish
        spent = meter.report()
        result = SearchResult(best=best, state=best.state, outcome=best.outcome, spent=spent, stats=dict(log.stats),
                              nodes=len(space.nodes), run_id=run.id if store else None, space=space, status=status, finish=finish)
    except BaseException as exc:
        if store is not None:
            stopped = isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError))  # Ctrl-C, SIGTERM, a cancelled task
            why = "interrupted: the search was stopped (Ctrl-C, SIGTERM or a cancelled task)" if stopped else f"{type(exc).__name__}: {exc}"
            try:
                await asyncio.shield(asyncio.to_thread(_write, store, space, run, log, best, task, status="interrupted" if stopped else "failed",
                                                       error=why, meter=meter, recorder=recorder))
            finally:
                signals.leave(session)
        raise
    if store is not None:
        try:
            result.rollout_ids = await asyncio.to_thread(_write, store, space, run, log, best, task, status=status, meter=meter,
                                                         error=None if status == "succeeded" else finish,
                                                         recorder=recorder)
        finally:
            signals.leave(session)
    return result


def search(graph: Any, input: Any, *, task: str | None = None, metadata: dict[str, Any] | None = None,
           settings: SearchSettings | None = None, **options: Any) -> SearchResult:
    """Synchronous `asearch`. A SIGTERM during a recorded search ends it like Ctrl-C (its
    tree written, the run `interrupted`), then the process ends by SIGTERM as it would have."""
    try:
        return run_sync(asearch(graph, input, task=task, metadata=metadata, settings=settings, **options))
    except signals.Terminated:
        signals.die_by_sigterm()
        raise


@dataclass
class _Session:
    """What trajgraph/recording/signals.py needs of an open run to end it on SIGTERM."""

    run: Run
    recorder: SearchRecorder


async def _explore(optimizer: Optimizer, space: Space, input: Any, log: TreeLog) -> Node:
    root = await space.root(input)
    return await optimizer.search(space, root, log)


async def _bounded(meter: BudgetMeter, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None when the budget stopped it. At the wall-time limit the
    work is cancelled, in-flight policy calls and branches with it (a hanging provider
    kept a 3-second search running for 140 s before)."""
    left = meter.time_left()
    deadline = asyncio.timeout(left)  # timeout(None) never expires
    try:
        async with deadline:
            return await work
    except BudgetExhausted:
        return None
    except TimeoutError:
        if not deadline.expired():
            raise  # a TimeoutError of the work's own, not the wall-time limit
        meter.spent.stopped_by = meter.spent.stopped_by or "wall_time_s"
        return None


def _settle(space: Space, returned: Node | None) -> Node:
    """The answer: what the optimizer returned if it is a valid finished trajectory,
    else the best valid finished one in the tree, else the most promising open node."""
    if returned is not None and returned.terminal and not returned.invalid:
        return returned
    found = space.best_terminal()
    if found is not None:
        if returned is not None:
            found.reason = found.reason or f"the optimizer's answer (#{returned.id}) was {'invalid' if returned.invalid else 'unfinished'}"
        return found
    return space.best_open() or space.nodes[0]


async def _finish(space: Space, node: Node, meter: BudgetMeter) -> tuple[Node, str]:
    """The driver's last resort: finish the answer with what the budget has left."""
    found: list[tuple[Node, str]] = []

    async def run() -> None:
        found.append(await space.finish(node))

    await _bounded(meter, run())
    return found[0] if found else (node, f"unfinished: the budget ({meter.spent.stopped_by}) ran out before the finish")


def _write(store: Store, space: Space, run: Run, log: TreeLog, best: Node | None, task: str | None, *,
           status: str, meter: BudgetMeter, error: str | None = None, recorder: SearchRecorder | None = None) -> list[str]:
    ids = write_search(store, space, run, log, best, task, recorder)
    stats = {k: v for k, v in log.stats.items() if not isinstance(v, (list, dict))}
    store.update_run(run.id, status=status, error=error, ended_at=time.time(),
                     output=None if best is None else best.state, outcome=None if best is None else best.outcome,
                     metadata={**run.metadata, "spent": meter.report().to_dict(), "stats": stats, "nodes": len(space.nodes)})
    return ids


def _inline(setting: bool | None) -> bool | None:
    """`inline=None` lets the space step sync graphs inline only on a loop the search started
    itself: awaited on someone else's loop (a LangGraph Server, a notebook), each inline step
    would block everything else that loop serves."""
    return setting if setting is not None or OWN_LOOP.get() else False


def _plain_schema(graph: Any, schema: Any, name: str, extra: str | None = None) -> type:
    """The schema's keys with no reducers: the search returns whole final values."""
    try:
        hints = typing.get_type_hints(schema, include_extras=False)
    except Exception:
        hints = {}
    if not hints and hasattr(schema, "model_fields"):
        hints = {k: Any for k in schema.model_fields}
    keys = [k for k in hints if k in graph.channels] or [k for k in graph.channels if not k.startswith(("__", "branch:"))]
    if extra is not None and extra not in keys:
        keys.append(extra)
    return TypedDict(name, {k: Any for k in keys}, total=False)  # type: ignore[operator]


def optimize(graph: Any, *, task: Callable[[Any], str | None] | None = None, result_key: str | None = None,
             settings: SearchSettings | None = None, **options: Any) -> Any:
    """Wrap an agent so that every call searches its decision points.

    graph: a compiled graph or a `StateGraph` builder; the settings (`SearchSettings`:
    decision_node, optimizer, reward, outcome, budget, store, policy, ...) come as
    keywords or as `settings=`. task(state): the task id to record for each call.

    The optimized graph returns the best trajectory's final state, with the agent's
    own keys. What the search spent and how it ended is reachable two ways, as a
    LangGraph user would look for it: `result_key="search"` adds that key to the
    output holding `SearchResult.summary()` (run id, status, outcome, spend), and
    every call streams the same summary on LangGraph's custom stream
    (`graph.stream(input, stream_mode="custom")` yields `{"trajgraph_search": {...}}`).
    """
    compiled = compiled_graph(graph, "optimize()")
    s = SearchSettings.of(settings, options)
    require_nodes(compiled, s.decision_node)
    agent_name = s.name or compiled.get_name() or "agent"
    s = dataclasses.replace(s, optimizer=resolve_optimizer(s.optimizer), name=agent_name,
                            store=Store(s.store) if isinstance(s.store, str) else s.store)

    builder: Any = getattr(compiled, "builder", None)
    state_schema = getattr(builder, "state_schema", None)
    plain: Any = _plain_schema(compiled, state_schema, f"{agent_name}_state", result_key) if state_schema else dict
    input_schema = _plain_schema(compiled, builder.input_schema, f"{agent_name}_input") if state_schema else plain
    output_schema = _plain_schema(compiled, builder.output_schema, f"{agent_name}_output", result_key) if state_schema else plain

    async def run_search(state: dict[str, Any]) -> dict[str, Any]:
        result = await asearch(compiled, dict(state), task=task(state) if task else None, settings=s)
        summary = result.summary()
        _stream_custom({"trajgraph_search": summary})
        out = dict(result.state)
        if result_key is not None:
            out[result_key] = summary
        return out

    def run_search_sync(state: dict[str, Any]) -> dict[str, Any]:
        return run_sync(run_search(state))

    from langchain_core.runnables import RunnableLambda

    wrapper: StateGraph[Any, Any, Any, Any] = StateGraph(plain, input_schema=input_schema, output_schema=output_schema)
    wrapper.add_node("search", RunnableLambda(run_search_sync, afunc=run_search, name="search"))  # type: ignore[type-var]  # LangGraph wants a schema type; the state is a plain dict here
    wrapper.add_edge(START, "search")
    wrapper.add_edge("search", END)
    return wrapper.compile(name=f"optimized_{agent_name}")


def _stream_custom(chunk: dict[str, Any]) -> None:
    """Emit on LangGraph's custom stream when running inside a graph (a no-op otherwise)."""
    from langgraph.config import get_stream_writer

    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a LangGraph run
        return
    writer(chunk)


def _with_settings_signature(fn: Callable[..., Any], before: Sequence[inspect.Parameter]) -> None:
    """help(asearch) and IDEs show every setting, though they are defined once, in SearchSettings."""
    own = [p for p in inspect.signature(fn).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                               default=inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default)
             for f in dataclasses.fields(SearchSettings)]
    fn.__signature__ = inspect.Signature([*before, *own[len(before):], *extra])  # type: ignore[attr-defined]


for _fn in (asearch, search, optimize):
    _params = list(inspect.signature(_fn).parameters.values())
    _with_settings_signature(_fn, _params[:2] if _fn is not optimize else _params[:1])


__all__ = ["optimize", "search", "asearch", "SearchResult", "SearchSettings"]
