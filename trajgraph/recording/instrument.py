"""Node-level instrumentation: what runs inside a recorded graph on every node call.

record.py decides *which run* a call belongs to (start, resume, finish); this
module is the per-node hot path underneath it: the `Recorder` a run carries in
its config, the wrapper that times each node and sends its update there, and the
stable step keys that let replay match a step of one execution to the same step
of another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, cast

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.errors import GraphBubbleUp

from trajgraph.store.writer import Later, Writer
from trajgraph.trajectory import Step

KEY = "__trajgraph_recorder"  # configurable key carrying the active recorder

StepKey = tuple[str, "int | None", str, str]


class Cassette(Protocol):
    """Answers steps during replay: (True, update) to skip the node, (False, None) to run it."""

    def answer(self, key: StepKey, step: Step) -> tuple[bool, Any]: ...


class StepKeys:
    """Stable identities of steps, equal across two executions of one graph.

    LangGraph task ids are fresh in every execution, so a subgraph step's
    namespace ("sub:<task id>") is rewritten as the parent's stable label
    ("sub@3": node sub at superstep 3). Feed steps in `seq` order: a parent
    step always starts, and so is numbered, before the steps inside it.
    """

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}

    def __call__(self, step: Step) -> StepKey:
        ns = ""
        if step.namespace:  # the innermost parent's label already spells the whole path
            parts = ns_parts(step.namespace)
            ns = self._labels.get(parts[-1][1]) or "|".join(name for name, _ in parts)
        if step.task_id:
            label = f"{step.node}@{step.lg_step}"
            if not step.path.startswith("__pregel_pull"):
                label += f"[{step.path}]"
            self._labels[step.task_id] = f"{ns}|{label}" if ns else label
        return (ns, step.lg_step, step.node, step.path)


def step_keys(steps: Sequence[Step]) -> list[StepKey]:
    """`StepKeys` over a recorded run's steps (in seq order)."""
    keys = StepKeys()
    return [keys(s) for s in sorted(steps, key=lambda s: s.seq)]


@dataclass
class Recorder:
    """State of one recorded run: sequence numbers and where rows go."""

    run_id: str
    writer: Writer
    decision_nodes: frozenset[str]
    next_seq: int = 0
    model_seq: int = 0
    root_ns: str = ""  # checkpoint namespace the run started in ("" unless used as a node)
    cassette: Cassette | None = None  # replay: answers steps from a recording
    forbid_models: bool = False  # replay: a model call is a divergence, not a cost
    nested_parents: frozenset[str] = frozenset()  # nodes whose functions call graphs (trajgraph/recording/nested.py)
    nested_seqs: dict[str, int] = field(default_factory=dict)  # their inner tasks' ids -> step seq
    keys: StepKeys = field(default_factory=StepKeys)
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

    def add_step_later(self, build: Callable[[], Step]) -> None:
        """A step the writer's thread builds (`Later`): the node wrapper's hot path builds nothing itself."""
        self.writer.put("step", Later(self.run_id, build))

    def answer(self, step: Step) -> tuple[bool, Any]:
        if self.cassette is None:
            return False, None
        with self._lock:
            key = self.keys(step)
        return self.cassette.answer(key, step)


class RecordingNode(Runnable[Any, Any]):
    """Wraps one node's runnable: times it and sends its update to the recorder."""

    def __init__(self, name: str, bound: Runnable[Any, Any]) -> None:
        self.name: str = name  # the node's name (Runnable's own `name` is optional)
        self.bound = bound

    def _begin(self, config: RunnableConfig | None) -> tuple[Recorder | None, tuple[Any, ...], RunnableConfig | None]:
        recorder = (config or {}).get("configurable", {}).get(KEY)
        if config is None or recorder is None or self.name.startswith("__"):  # __start__ only echoes the input
            return None, (), config
        md = config.get("metadata") or {}
        info = locate(recorder, md)
        return recorder, info, cast(RunnableConfig, {**config, "metadata": {**md, "trajgraph_step": info[0]}})

    def _end(self, recorder: Recorder, info: tuple[Any, ...], t0: float, out: Any = None, exc: BaseException | None = None) -> None:
        if exc is not None:
            recorder.add_step(make_step(recorder, self.name, info, t0, exc=exc))
            return
        action = out if self.name in recorder.decision_nodes else None
        latency = (time.perf_counter() - t0) * 1000
        recorder.add_step_later(partial(step_of, recorder.run_id, self.name, info, latency, out, action))

    def _answer(self, recorder: Recorder, info: tuple[Any, ...]) -> tuple[bool, Any]:
        if recorder.cassette is None:
            return False, None
        return recorder.answer(make_step(recorder, self.name, info))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        recorder, info, config = self._begin(config)
        if recorder is None:
            return self.bound.invoke(input, config, **kwargs)
        t0 = time.perf_counter()
        try:
            answered, out = self._answer(recorder, info)
            if not answered:
                out = self.bound.invoke(input, config, **kwargs)
        except BaseException as exc:
            self._end(recorder, info, t0, exc=exc)
            raise
        self._end(recorder, info, t0, out)
        return out

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        recorder, info, config = self._begin(config)
        if recorder is None:
            return await self.bound.ainvoke(input, config, **kwargs)
        t0 = time.perf_counter()
        try:
            answered, out = self._answer(recorder, info)
            if not answered:
                out = await self.bound.ainvoke(input, config, **kwargs)
        except BaseException as exc:
            self._end(recorder, info, t0, exc=exc)
            raise
        self._end(recorder, info, t0, out)
        return out


def locate(recorder: Recorder, md: dict[str, Any]) -> tuple[Any, ...]:
    """A new step's seq and place, from its task's LangGraph metadata.

    Returns (seq, superstep, task path, parent namespace, own task id, start
    time): the Step itself is built once, at the end, as this is the hot path
    of every node.
    """
    seq = recorder.allocate()
    # "parent:<task id>|...|node:<own task id>", relative to where the run started
    ns = str(md.get("langgraph_checkpoint_ns") or "")
    if recorder.root_ns and ns.startswith(recorder.root_ns + "|"):
        ns = ns[len(recorder.root_ns) + 1 :]
    parent, _, own = ns.rpartition("|")
    return (seq, md.get("langgraph_step"), _path(md.get("langgraph_path")), parent, own.partition(":")[2], time.time())


def make_step(recorder: Recorder, node: str, info: tuple[Any, ...], t0: float | None = None, *,
              update: Any = None, action: Any = None, exc: BaseException | None = None) -> Step:
    """The Step for `info` (from `locate`), ended at `t0` + its latency, by `exc` when it raised."""
    latency = 0.0 if t0 is None else (time.perf_counter() - t0) * 1000
    if isinstance(exc, GraphBubbleUp):  # interrupt or parent command: not a failure
        return step_of(recorder.run_id, node, info, latency, interrupted=True)
    if exc is not None:
        return step_of(recorder.run_id, node, info, latency, error=f"{type(exc).__name__}: {exc}")
    return step_of(recorder.run_id, node, info, latency, update, action)


def step_of(run_id: str, node: str, info: tuple[Any, ...], latency_ms: float, update: Any = None, action: Any = None,
            **outcome: Any) -> Step:
    """The Step of a node call placed by `info` (from `locate`); `outcome`: `error=` or `interrupted=`."""
    seq, lg_step, path, namespace, task_id, started_at = info
    return Step(run_id=run_id, seq=seq, node=node, lg_step=lg_step, path=path, namespace=namespace, task_id=task_id,
                started_at=started_at, latency_ms=latency_ms, update=update, action=action, **outcome)


def ns_parts(namespace: str) -> list[tuple[str, str]]:
    """"a:<id>|b:<id>" -> [("a", id), ("b", id)]: each enclosing task's node and task id, outermost first."""
    return [(name, task) for name, _, task in (part.partition(":") for part in namespace.split("|") if part)]


def _path(path: Any) -> str:
    if not path:
        return ""
    return "/".join(str(p) for p in path if not isinstance(p, bool))


__all__ = ["KEY", "StepKey", "Cassette", "StepKeys", "step_keys", "Recorder", "RecordingNode", "locate", "make_step", "step_of", "ns_parts"]
