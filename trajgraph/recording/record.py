"""record(graph): instrument an unmodified compiled LangGraph graph.

How: every node's runnable is swapped for a thin wrapper on a `graph.copy(...)`
(edges, retry/cache policies and routing stay LangGraph's own), subgraphs are
instrumented the same way (the wrapper, the `Recorder` and stable step keys live
in trajgraph/recording/instrument.py), and one callback handler captures chat-model calls.
That handler is not put in the run's config (every runnable inherits those, and LangChain dispatches
every chain event to them): while the graph computes a chunk, a context variable holds it and a LangChain
configure hook adds it to each model call (trajgraph/recording/_callbacks.py); the caller's code between
chunks is not the run's. The result is still a compiled graph of the same class family, so `invoke`,
`stream`, `batch`, `get_state` and use as a node behave as before.
Each step stores the node's *update*, never the whole input state again; rows go
to a background writer (trajgraph/store/writer.py), so JSON encoding and SQLite
commits stay off the graph's thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.pregel import Pregel
from langgraph.types import Command

from trajgraph._internal.langgraph import (
    RESUMING_KEY,
    compiled_fields,
    node_runnables,
    node_subgraphs,
    require_nodes,
    retype,
    with_node_runnables,
)
from trajgraph.errors import GraphError
from trajgraph.recording import signals
from trajgraph.recording._callbacks import ACTIVE, ModelCallRecorder, reaching_model_calls, use_configure_hook
from trajgraph.recording.instrument import KEY as _KEY
from trajgraph.recording.instrument import Cassette, Recorder, RecordingNode, StepKey, StepKeys, step_keys  # noqa: F401 (re-exported)
from trajgraph.recording.nested import NestedSteps, nested_graph_nodes
from trajgraph.store import Store
from trajgraph.store.redact import Redactor
from trajgraph.store.writer import Writer, writer_for
from trajgraph.trajectory import Run, new_id

DEFAULT_DECISION_NODES = ("agent", "model", "policy", "call_model")
_DONE = object()  # the end of a graph's chunks


@dataclass
class _Settings:
    store: Store
    name: str
    tags: tuple[str, ...]
    decision_nodes: frozenset[str]
    metadata: dict[str, Any]
    graph_path: str | None
    task: Callable[[Any], str | None] | None
    nested_parents: frozenset[str]  # nodes whose functions call graphs (trajgraph/recording/nested.py)


def instrument(graph: Pregel) -> Pregel:
    """A copy of `graph` whose nodes (and subgraphs' nodes) report to the active recorder."""
    if isinstance(graph, _RecordingMixin):
        graph = unwrap(graph)
    swaps: dict[str, tuple[Any, list[Any]]] = {}
    for name, bound in node_runnables(graph).items():
        if isinstance(bound, RecordingNode):
            continue
        subgraphs = node_subgraphs(graph, name)
        if isinstance(bound, Pregel):  # a recorded graph used as a node joins the outer run
            bound = instrument(bound)
            subgraphs = [bound]
        swaps[name] = (RecordingNode(name, bound), subgraphs)
    return with_node_runnables(graph, swaps)


class _Tracker:
    """Reads the final state and any interrupt off the chunks of any stream mode/version."""

    def __init__(self, graph: Pregel, kwargs: dict[str, Any]) -> None:
        self.mode = kwargs.get("stream_mode") or graph.stream_mode
        self.multi = isinstance(self.mode, (list, tuple))
        self.subgraphs = bool(kwargs.get("subgraphs"))
        self.v2 = kwargs.get("version") == "v2"
        self.output: Any = None
        self.interrupted = False

    def see(self, chunk: Any) -> None:
        try:
            if self.v2 and isinstance(chunk, dict) and "type" in chunk:
                if chunk.get("ns"):
                    return
                mode, data = chunk["type"], chunk.get("data")
                self.interrupted = self.interrupted or bool(chunk.get("interrupts"))
            else:
                if self.subgraphs:
                    if chunk[0]:  # a subgraph's chunk
                        return
                    chunk = chunk[1:] if self.multi else chunk[1]
                mode, data = chunk if self.multi else (self.mode, chunk)
        except (TypeError, ValueError, KeyError, IndexError):
            return
        if isinstance(data, dict) and "__interrupt__" in data:
            self.interrupted = True
            data = {k: v for k, v in data.items() if k != "__interrupt__"}
        if mode == "values":
            self.output = data


class _RecordingMixin:
    """Overrides the two entry points every Pregel call funnels through."""

    _tg: _Settings

    def copy(self, update: dict[str, Any] | None = None) -> Any:
        return _as_recorded(Pregel.copy(unwrap(self), update), self._tg)  # type: ignore[arg-type]

    @property
    def trajgraph_store(self) -> Store:
        """The trajgraph store runs land in (`.store` stays LangGraph's own BaseStore)."""
        return self._tg.store

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        config, session = _start(self, input, config)
        if session is None:
            yield from super().stream(input, config, **kwargs)  # type: ignore[misc]
            return
        tracker = _Tracker(self, kwargs)  # type: ignore[arg-type]
        chunks = super().stream(input, config, **kwargs)  # type: ignore[misc]
        try:
            while True:
                token = ACTIVE.set(session.model_calls)  # while the graph computes: its model calls are the run's
                try:
                    chunk = next(chunks, _DONE)
                finally:
                    ACTIVE.reset(token)
                if chunk is _DONE:
                    break
                tracker.see(chunk)
                yield chunk
        except BaseException as exc:
            session.finish(self, config, tracker, exc=exc)
            raise
        session.finish(self, config, tracker)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        # start and finish off the event loop: a resume reads the store, the end waits for the writer
        run_config, session = await asyncio.to_thread(_start, self, input, config)
        if session is None:
            async for chunk in super().astream(input, run_config, **kwargs):  # type: ignore[misc]
                yield chunk
            return
        tracker = _Tracker(self, kwargs)  # type: ignore[arg-type]
        chunks = super().astream(input, run_config, **kwargs)  # type: ignore[misc]
        try:
            while True:
                token = ACTIVE.set(session.model_calls)  # in this task only: tasks the graph starts copy it
                try:
                    chunk = await anext(chunks, _DONE)
                finally:
                    ACTIVE.reset(token)
                if chunk is _DONE:
                    break
                tracker.see(chunk)
                yield chunk
        except BaseException as exc:
            await asyncio.to_thread(session.finish, self, run_config, tracker, exc=exc)
            raise
        await asyncio.to_thread(session.finish, self, run_config, tracker)


@dataclass
class _Session:
    run: Run
    recorder: Recorder
    model_calls: ModelCallRecorder

    def finish(self, graph: Any, config: RunnableConfig, tracker: _Tracker, *, exc: BaseException | None = None) -> None:
        fields: dict[str, Any] = {"ended_at": time.time()}
        if exc is not None:
            interrupted = isinstance(exc, (GraphBubbleUp, KeyboardInterrupt, GeneratorExit))
            fields["status"] = "interrupted" if interrupted else "failed"
            fields["error"] = f"{type(exc).__name__}: {exc}"
        else:
            fields["status"] = "succeeded"
            if tracker.output is not None:
                fields["output"] = tracker.output
            if tracker.interrupted or _pending(graph, config):
                fields["status"] = "interrupted"
        if fields["status"] == "interrupted":
            fields["ended_at"] = None
        self.recorder.writer.put("run_update", (self.run.id, fields))
        # on disk before the result, error or interrupt reaches the caller: a row that could not be
        # stored is raised here (StoreError), at the end of invoke, never lost in silence
        try:
            self.recorder.writer.flush(run_id=self.run.id)
        except Exception as store_error:
            if exc is None:
                raise
            exc.add_note(f"trajgraph: also, the run's rows were not all stored: {store_error}")
        finally:
            signals.leave(self)
        if isinstance(exc, signals.Terminated):  # SIGTERM: end the other open runs too, then die as SIGTERM would
            for other in signals.others():
                other.recorder.writer.put("run_update", (other.run.id, {"status": "interrupted", "error": fields["error"]}))
                try:
                    other.recorder.writer.flush(timeout=5, raise_errors=False)
                except Exception:  # the process ends now; its death is still detected on the next open
                    pass
                signals.leave(other)
            signals.die_by_sigterm()


def _pending(graph: Any, config: RunnableConfig) -> bool:
    """A static interrupt (interrupt_before/after) leaves tasks to run on a checkpointed thread."""
    if not graph.checkpointer or not (config.get("configurable") or {}).get("thread_id"):
        return False
    conf = {k: v for k, v in (config.get("configurable") or {}).items() if k != _KEY}
    try:
        state = Pregel.get_state(graph, {"configurable": conf})
    except Exception:  # a nested graph or a checkpointer that cannot answer: no evidence
        return False
    return bool(state.next)


def _start(graph: Any, input: Any, given: RunnableConfig | None) -> tuple[RunnableConfig, _Session | None]:
    config: dict[str, Any] = dict(given or {})
    configurable = dict(config.get("configurable") or {})
    if configurable.get(_KEY) is not None:  # already inside a recorded run: join it
        return cast(RunnableConfig, config), None
    settings: _Settings = graph._tg
    writer = writer_for(settings.store)
    thread_id = configurable.get("thread_id")
    thread_id = None if thread_id is None else str(thread_id)
    root_ns = str(configurable.get("checkpoint_ns") or "")
    resuming = input is None or isinstance(input, Command) or bool(configurable.get(RESUMING_KEY))
    run = _resumable(settings, writer, thread_id, root_ns) if resuming else None
    if run is None:
        metadata = dict(settings.metadata)
        if root_ns:
            metadata["checkpoint_ns"] = root_ns
        run = Run(
            id=new_id(),
            graph=settings.name,
            graph_path=settings.graph_path,
            kind="record",
            input=input,
            task=settings.task(input) if settings.task else None,
            thread_id=thread_id,
            tags=_tags(settings.tags, (graph.config or {}).get("tags"), config.get("tags")),
            metadata=metadata,
        )
        writer.put("run", run)
        next_seq = 0
    else:
        # the same run goes on; keep what resumed it, so replay can resume the same way
        resumes = [*run.metadata.get("resumes", []), input]  # encoded (tagged) on write, revived on read
        next_seq = settings.store.next_seq(run.id)
        writer.put("run_update", (run.id, {"status": "running", "error": None, "metadata": {**run.metadata, "resumes": resumes}}))
    recorder = Recorder(
        run_id=run.id,
        writer=writer,
        decision_nodes=settings.decision_nodes,
        next_seq=next_seq,
        root_ns=root_ns,
        nested_parents=settings.nested_parents,
    )
    if resuming and next_seq:
        recorder.model_seq = settings.store.next_seq(run.id, "model_calls")
    session = _Session(run, recorder, ModelCallRecorder(recorder))
    use_configure_hook()
    signals.enter(session)  # SIGTERM now ends this run as interrupted (main thread, default handler only)
    return _attach(config, configurable, recorder), session


def _tags(*groups: Any) -> tuple[str, ...]:
    """record(tags=), graph.with_config(tags=) and the call's config tags, in order, once each."""
    return tuple(dict.fromkeys(str(t) for group in groups for t in (group or ())))


def _attach(config: dict[str, Any], configurable: dict[str, Any], recorder: Recorder) -> RunnableConfig:
    configurable[_KEY] = recorder
    config["configurable"] = configurable
    if recorder.nested_parents:  # the steps of graphs that nodes call from their own functions (nested.py)
        handler = NestedSteps(recorder)
        callbacks = config.get("callbacks")
        if callbacks is None:
            config["callbacks"] = [handler]
        elif isinstance(callbacks, list):
            config["callbacks"] = [*callbacks, handler]
        else:  # a CallbackManager
            callbacks = callbacks.copy()
            callbacks.add_handler(handler, inherit=True)
            config["callbacks"] = callbacks
    return cast(RunnableConfig, config)


def _resumable(settings: _Settings, writer: Writer, thread_id: str | None, root_ns: str) -> Run | None:
    """The run on this thread (and namespace) that a resume continues: the latest one, if it was
    interrupted, or failed (LangGraph retries a failed node when a checkpointed thread resumes)."""
    if thread_id is None:
        return None
    writer.flush(raise_errors=False)  # its last rows may still be queued (a loss is raised to its own run)
    for run in settings.store.runs(graph=settings.name, thread_id=thread_id, limit=20):
        if run.metadata.get("checkpoint_ns", "") == root_ns:
            return run if run.status in ("interrupted", "failed") else None
    return None


_CLASSES: dict[type, type] = {}


def _recorded_class(cls: type) -> type:
    if issubclass(cls, _RecordingMixin):
        return cls
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Recorded{cls.__name__}", (_RecordingMixin, cls), {})
    return _CLASSES[cls]


def _base_class(cls: type) -> type:
    return next(c for c in cls.__mro__[1:] if c is not _RecordingMixin and not issubclass(c, _RecordingMixin))


def is_recorded(graph: Any) -> bool:
    """Whether `graph` is a `record(...)` wrapper."""
    return isinstance(graph, _RecordingMixin)


def unwrap(graph: Pregel) -> Pregel:
    """The plain compiled graph under a recorded one (its nodes stay instrumented)."""
    base = _base_class(type(graph))
    return base(**{k: v for k, v in compiled_fields(graph).items() if k != "_tg"})


def _as_recorded(graph: Pregel, settings: _Settings) -> Pregel:
    # no __init__: the compiled graph's fields are copied as they are
    return cast(Pregel, retype(graph, _recorded_class(type(graph)), _tg=settings))


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
    checkpointer: Any = None,
    redact: Redactor | None | str = "store",
) -> Pregel:
    """Wrap a compiled graph so that every run lands in `store`, step by step.

    The returned object is a compiled graph: use it exactly like `graph`.
    `decision_nodes` are the nodes whose update is the agent's chosen action
    (default: any of agent/model/policy/call_model that the graph has).
    `task(input) -> str` names the task of a run, for splits and pairing.
    `graph_path` ("module:attr") lets `trajgraph replay` re-import the graph.
    `checkpointer` replaces the graph's own (needed for interrupts and resume).
    `redact(text) -> text` rewrites everything this recording writes (default:
    the store's, `redact_secrets`; None keeps values as they are; see
    trajgraph/store/redact.py); credentials passed as model-call parameters
    are never stored whatever it is.
    Rows are written by a background thread; reads through `store` see them at
    once, other readers within about 50 ms, or after `store.flush()`.
    """
    if not isinstance(graph, Pregel):  # a builder too: recording wraps what the user compiled
        raise GraphError(f"record() needs a compiled LangGraph graph, got {type(graph).__name__}; call .compile() first")
    if not isinstance(store, Store):
        store = Store(store) if redact == "store" else Store(store, redact=cast(Any, redact))
    elif redact != "store" and redact is not store.redact:  # the same file, through a writer that redacts so
        store = Store(store.path, readonly=store.readonly, redact=cast(Any, redact))
    store.setup()
    if isinstance(graph, _RecordingMixin):
        graph = unwrap(graph)
    if checkpointer is not None:
        graph = Pregel.copy(graph, {"checkpointer": checkpointer})
    if decision_nodes is None:
        decision_nodes = [n for n in DEFAULT_DECISION_NODES if n in graph.nodes]
    require_nodes(graph, decision_nodes)
    instrumented = instrument(graph)
    settings = _Settings(
        store=store,
        name=name or graph.get_name() or "graph",
        tags=tuple(tags),
        decision_nodes=frozenset(decision_nodes),
        metadata=dict(metadata or {}),
        graph_path=graph_path,
        task=task,
        nested_parents=nested_graph_nodes(instrumented),
    )
    return _as_recorded(instrumented, settings)


def recorder_session(graph: Pregel, recorder: Recorder, config: RunnableConfig | None = None) -> RunnableConfig:
    """Config that makes an instrumented graph report its steps to `recorder` (used by replay); its model
    calls reach `recorder` inside `model_calls_to(recorder)`."""
    conf: dict[str, Any] = dict(config or {})
    return _attach(conf, dict(conf.get("configurable") or {}), recorder)


def model_calls_to(recorder: Recorder) -> AbstractContextManager[None]:
    """Model calls made inside (and in threads and tasks started inside) are recorded by `recorder`."""
    return reaching_model_calls(ModelCallRecorder(recorder))


__all__ = ["record", "instrument", "Recorder", "Cassette", "StepKeys", "step_keys", "recorder_session", "model_calls_to"]
