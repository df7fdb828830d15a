"""record(graph): instrument an unmodified compiled LangGraph graph.

How: every node's runnable is swapped for a thin wrapper on a `graph.copy(...)`
(edges, retry/cache policies and routing stay LangGraph's own), subgraphs are
instrumented the same way, and one callback handler captures chat-model calls.
The result is still a compiled graph of the same class family, so `invoke`,
`stream`, `batch`, `get_state` and use as a node behave as before.
Each step stores the node's *update*, never the whole input state again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.pregel import Pregel

from trajgraph._callbacks import ModelCallRecorder
from trajgraph._writer import Writer, writer_for
from trajgraph.store import Store
from trajgraph.trajectory import Run, Step, new_id

_KEY = "__trajgraph_recorder"  # configurable key carrying the active recorder
DEFAULT_DECISION_NODES = ("agent", "model", "policy", "call_model")


@dataclass
class _Settings:
    store: Store
    name: str
    tags: tuple[str, ...]
    decision_nodes: frozenset[str]
    metadata: dict[str, Any]
    graph_path: str | None
    task: Callable[[Any], str | None] | None


@dataclass
class Recorder:
    """State of one recorded run: sequence numbers and where rows go."""

    run_id: str
    writer: Writer
    decision_nodes: frozenset[str]
    next_seq: int = 0
    model_seq: int = 0
    # replay hooks: answer(node_key) -> recorded update, or raise to stop
    cassette: Callable[[tuple[str, int | None, str, str], int], tuple[bool, Any]] | None = None
    observed: list[Step] = field(default_factory=list)
    keep_steps: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allocate(self) -> int:
        with self._lock:
            seq = self.next_seq
            self.next_seq += 1
            return seq

    def allocate_model_call(self) -> int:
        with self._lock:
            seq = self.model_seq
            self.model_seq += 1
            return seq

    def add_step(self, step: Step) -> None:
        self.writer.put("step", step)
        if self.keep_steps:
            with self._lock:
                self.observed.append(step)


def step_key(step: Step) -> tuple[str, int | None, str, str]:
    """What identifies 'the same step' across two executions of one graph."""
    return (clean_namespace(step.namespace), step.lg_step, step.node, step.path)


def clean_namespace(ns: str) -> str:
    """'sub:1f2e…|inner:9a…' -> 'sub|inner' (task ids differ between executions)."""
    return "|".join(part.split(":", 1)[0] for part in ns.split("|")) if ns else ""


class _RecordingNode(Runnable[Any, Any]):
    """Wraps one node's runnable: times it and sends its update to the recorder."""

    def __init__(self, name: str, bound: Runnable[Any, Any]) -> None:
        self.name = name
        self.bound = bound

    def _begin(self, config: RunnableConfig | None) -> tuple[Recorder | None, Step | None, RunnableConfig | None]:
        recorder = (config or {}).get("configurable", {}).get(_KEY)
        if recorder is None or self.name.startswith("__"):  # __start__ only echoes the input
            return None, None, config
        md = (config or {}).get("metadata") or {}
        seq = recorder.allocate()
        step = Step(
            run_id=recorder.run_id,
            seq=seq,
            node=self.name,
            lg_step=md.get("langgraph_step"),
            path=_path(md.get("langgraph_path")),
            namespace=str(md.get("checkpoint_ns") or ""),
            started_at=time.time(),
        )
        config = {**(config or {}), "metadata": {**md, "trajgraph_step": seq}}
        return recorder, step, config

    def _end(self, recorder: Recorder, step: Step, t0: float, out: Any = None, exc: BaseException | None = None) -> None:
        latency = (time.perf_counter() - t0) * 1000
        if exc is None:
            action = out if self.name in recorder.decision_nodes else None
            step = step.replace(update=out, action=action, latency_ms=latency)
        elif isinstance(exc, GraphBubbleUp):  # interrupt or parent command: not a failure
            step = step.replace(interrupted=True, latency_ms=latency)
        else:
            step = step.replace(error=f"{type(exc).__name__}: {exc}", latency_ms=latency)
        recorder.add_step(step)

    def _answer(self, recorder: Recorder, step: Step) -> tuple[bool, Any]:
        if recorder.cassette is None:
            return False, None
        return recorder.cassette(step_key(step), step.seq)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        recorder, step, config = self._begin(config)
        if recorder is None or step is None:
            return self.bound.invoke(input, config, **kwargs)
        t0 = time.perf_counter()
        try:
            answered, out = self._answer(recorder, step)
            if not answered:
                out = self.bound.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._end(recorder, step, t0, exc=exc)
            raise
        self._end(recorder, step, t0, out)
        return out

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        recorder, step, config = self._begin(config)
        if recorder is None or step is None:
            return await self.bound.ainvoke(input, config, **kwargs)
        t0 = time.perf_counter()
        try:
            answered, out = self._answer(recorder, step)
            if not answered:
                out = await self.bound.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._end(recorder, step, t0, exc=exc)
            raise
        self._end(recorder, step, t0, out)
        return out


def _path(path: Any) -> str:
    if not path:
        return ""
    return "/".join(str(p) for p in path if not isinstance(p, bool))


def instrument(graph: Pregel) -> Pregel:
    """A copy of `graph` whose nodes (and subgraphs' nodes) report to the active recorder."""
    nodes = {}
    for name, node in graph.nodes.items():
        bound = node.bound
        subgraphs = list(node.subgraphs)
        if isinstance(bound, Pregel):
            bound = instrument(bound)
            subgraphs = [bound]
        if isinstance(bound, _RecordingNode):
            nodes[name] = node
            continue
        nodes[name] = node.copy({"bound": _RecordingNode(name, bound), "subgraphs": subgraphs})
    return Pregel.copy(graph, {"nodes": nodes})


class _RecordingMixin:
    """Overrides the two entry points every Pregel call funnels through."""

    _tg: _Settings

    def copy(self, update: dict[str, Any] | None = None) -> Any:
        base = _base_class(type(self))
        attrs = {k: v for k, v in self.__dict__.items() if k not in ("__orig_class__", "_tg")}
        attrs.update(update or {})
        return _as_recorded(base(**attrs), self._tg)

    @property
    def store(self) -> Store:  # type: ignore[override]
        return self._tg.store

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        config, session = _start(self, input, config)
        if session is None:
            yield from super().stream(input, config, **kwargs)  # type: ignore[misc]
            return
        last = None
        try:
            for chunk in super().stream(input, config, **kwargs):  # type: ignore[misc]
                last = chunk
                yield chunk
        except BaseException as exc:
            session.finish(self, config, exc=exc)
            raise
        session.finish(self, config, last=last, mode=kwargs.get("stream_mode"))

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        config, session = _start(self, input, config)
        if session is None:
            async for chunk in super().astream(input, config, **kwargs):  # type: ignore[misc]
                yield chunk
            return
        last = None
        try:
            async for chunk in super().astream(input, config, **kwargs):  # type: ignore[misc]
                last = chunk
                yield chunk
        except BaseException as exc:
            session.finish(self, config, exc=exc)
            raise
        session.finish(self, config, last=last, mode=kwargs.get("stream_mode"))


@dataclass
class _Session:
    run: Run
    recorder: Recorder
    resumed: bool

    def finish(self, graph: Any, config: RunnableConfig, *, last: Any = None, mode: Any = None, exc: BaseException | None = None) -> None:
        fields: dict[str, Any] = {"ended_at": time.time()}
        if exc is not None:
            interrupted = isinstance(exc, GraphBubbleUp) or isinstance(exc, (KeyboardInterrupt, GeneratorExit))
            fields["status"] = "interrupted" if interrupted else "failed"
            fields["error"] = f"{type(exc).__name__}: {exc}"
        else:
            fields["status"] = "succeeded"
            if mode in (None, "values") and isinstance(last, dict) and "__interrupt__" not in last:
                fields["output"] = last
            if _pending_interrupt(graph, config, last):
                fields["status"] = "interrupted"
                fields["ended_at"] = None
        self.recorder.writer.put("run_update", (self.run.id, fields))
        self.recorder.writer.flush()


def _pending_interrupt(graph: Any, config: RunnableConfig, last: Any) -> bool:
    if isinstance(last, dict) and "__interrupt__" in last:
        return True
    if graph.checkpointer is None and not (config.get("configurable") or {}).get("__pregel_checkpointer"):
        return False
    try:
        state = Pregel.get_state(graph, _public_config(config))
    except Exception:
        return False
    return bool(state.next) and any(t.interrupts for t in state.tasks)


def _public_config(config: RunnableConfig) -> RunnableConfig:
    conf = {k: v for k, v in (config.get("configurable") or {}).items() if k != _KEY}
    return {**config, "configurable": conf, "callbacks": None}


def _start(graph: Any, input: Any, config: RunnableConfig | None) -> tuple[RunnableConfig, _Session | None]:
    config = dict(config or {})
    configurable = dict(config.get("configurable") or {})
    if configurable.get(_KEY) is not None:  # already inside a recorded run: join it
        return config, None
    settings: _Settings = graph._tg
    writer = writer_for(settings.store)
    thread_id = configurable.get("thread_id")
    run = _resumable(settings, thread_id, input)
    resumed = run is not None
    if run is None:
        run = Run(
            id=new_id(),
            graph=settings.name,
            graph_path=settings.graph_path,
            kind="record",
            input=input,
            task=settings.task(input) if settings.task else None,
            thread_id=None if thread_id is None else str(thread_id),
            tags=settings.tags + tuple(config.get("tags") or ()),
            metadata=settings.metadata,
        )
        writer.put("run", run)
        next_seq = 0
    else:
        writer.flush()
        next_seq = settings.store.next_seq(run.id)
        writer.put("run_update", (run.id, {"status": "running"}))
    recorder = Recorder(run_id=run.id, writer=writer, decision_nodes=settings.decision_nodes, next_seq=next_seq)
    return _attach(config, configurable, recorder), _Session(run, recorder, resumed)


def _attach(config: dict[str, Any], configurable: dict[str, Any], recorder: Recorder) -> RunnableConfig:
    configurable[_KEY] = recorder
    config["configurable"] = configurable
    handler = ModelCallRecorder(recorder)
    callbacks = config.get("callbacks")
    if callbacks is None:
        config["callbacks"] = [handler]
    elif isinstance(callbacks, list):
        config["callbacks"] = [*callbacks, handler]
    else:  # a CallbackManager
        callbacks = callbacks.copy()
        callbacks.add_handler(handler, inherit=True)
        config["callbacks"] = callbacks
    return config  # type: ignore[return-value]


def _resumable(settings: _Settings, thread_id: Any, input: Any) -> Run | None:
    """A resumed interrupt (input None or Command(resume=...)) continues its run."""
    if thread_id is None:
        return None
    if input is not None and type(input).__name__ != "Command":
        return None
    writer_for(settings.store).flush()
    candidates = [r for r in settings.store.runs(graph=settings.name, status="interrupted", limit=20) if r.thread_id == str(thread_id)]
    return candidates[0] if candidates else None


_CLASSES: dict[type, type] = {}


def _recorded_class(cls: type) -> type:
    if issubclass(cls, _RecordingMixin):
        return cls
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Recorded{cls.__name__}", (_RecordingMixin, cls), {})
    return _CLASSES[cls]


def _base_class(cls: type) -> type:
    return next(c for c in cls.__mro__[1:] if c is not _RecordingMixin and not issubclass(c, _RecordingMixin))


def _as_recorded(graph: Pregel, settings: _Settings) -> Pregel:
    cls = _recorded_class(type(graph))
    obj = cls.__new__(cls)
    obj.__dict__.update(graph.__dict__)
    obj._tg = settings
    return obj


def record(
    graph: Pregel,
    *,
    store: Store | str,
    name: str | None = None,
    tags: Sequence[str] = (),
    decision_nodes: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    graph_path: str | None = None,
    task: Callable[[Any], str | None] | None = None,
) -> Pregel:
    """Wrap a compiled graph so that every run lands in `store`, step by step.

    The returned object is a compiled graph: use it exactly like `graph`.
    `decision_nodes` are the nodes whose update is the agent's chosen action
    (default: any of agent/model/policy/call_model that the graph has).
    `task(input) -> str` names the task of a run, for splits and pairing.
    """
    if not isinstance(graph, Pregel):
        raise TypeError(f"record() needs a compiled LangGraph graph, got {type(graph).__name__}; call .compile() first")
    store = Store(store) if not isinstance(store, Store) else store
    store.setup()
    if isinstance(graph, _RecordingMixin):
        graph = graph.copy()
        base = _base_class(type(graph))
        graph = base(**{k: v for k, v in graph.__dict__.items() if k not in ("__orig_class__", "_tg")})
    if decision_nodes is None:
        decision_nodes = [n for n in DEFAULT_DECISION_NODES if n in graph.nodes]
    unknown = [n for n in decision_nodes if n not in graph.nodes]
    if unknown:
        raise ValueError(f"decision node(s) {unknown} not in graph; nodes are {sorted(n for n in graph.nodes if not n.startswith('__'))}")
    settings = _Settings(
        store=store,
        name=name or graph.get_name() or "graph",
        tags=tuple(tags),
        decision_nodes=frozenset(decision_nodes),
        metadata=dict(metadata or {}),
        graph_path=graph_path,
        task=task,
    )
    return _as_recorded(instrument(graph), settings)


def recorder_session(graph: Pregel, recorder: Recorder, config: RunnableConfig | None = None) -> RunnableConfig:
    """Config that makes an instrumented graph report to `recorder` (used by replay)."""
    config = dict(config or {})
    return _attach(config, dict(config.get("configurable") or {}), recorder)


__all__ = ["record", "instrument", "Recorder", "step_key", "clean_namespace"]
