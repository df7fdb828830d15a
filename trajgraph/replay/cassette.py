"""replay(store, run): cassette replay, fork at step N, and a step-by-step diff of two runs.

LangGraph's own replay from a checkpoint re-executes nodes, so the model is
called again and answers differently. Here the graph is re-run with its nodes
instrumented (trajgraph/recording/record.py) and a *cassette* answering steps from the
recording, the way VCR-style HTTP cassettes answer requests:

- cassette replay: every node that made a model call in the recording (and
  every decision node) returns its recorded update; the other nodes (tools,
  environment steps) run live, and their updates are compared with the record
  (canonical JSON: `add_messages`' random ids and provider metadata ignored).
  No model is called; one that would be is a divergence.
- fork at step N: steps before N are answered from the record, step N runs
  live or returns a substituted action, everything after runs live.

Steps are matched by a stable key: namespace (with task ids replaced by their
parent's node@superstep), LangGraph superstep, node and task path. Each replay
or fork is stored as a new Run linked to the original (`parent_id`). Comparing
the stored steps (the divergence, `diff`) is trajgraph/replay/diff.py.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel

from trajgraph._internal.hermetic import memory_checkpointer
from trajgraph.errors import ReplayError, StoreError, TrajgraphError
from trajgraph.recording.instrument import Recorder, StepKey, ns_parts, step_keys
from trajgraph.recording.nested import nested_graph_nodes
from trajgraph.recording.record import instrument, model_calls_to, recorder_session
from trajgraph.replay.diff import Divergence, first_divergence, pair_steps
from trajgraph.store import Store
from trajgraph.store.json import canonical
from trajgraph.store.rows import unreadable
from trajgraph.store.writer import writer_for
from trajgraph.trajectory import Run, Step, new_id


@dataclass(frozen=True)
class ReplayResult:
    """What a replay or fork did, and whether it reproduced the recording."""

    run_id: str  # the new run (kind "replay" or "fork")
    parent_id: str  # the recording it replayed
    kind: str
    status: str
    matched: bool  # every step and the output equal to the recording's
    steps: int  # steps compared (pairs of recorded and new steps)
    answered: int  # steps answered from the cassette instead of run
    divergence: Divergence | None
    output: Any = None
    error: str | None = None
    fork_step: int | None = None


class _Tape:
    """The cassette: recorded steps queued per stable key, consumed in order."""

    def __init__(
        self,
        steps: Sequence[Step],
        answer_nodes: set[str],
        *,
        live: bool,
        fork_at: int | None,
        action: Any,
    ) -> None:
        self._queues: dict[StepKey, deque[Step]] = defaultdict(deque)
        for key, step in zip(step_keys(steps), sorted(steps, key=lambda s: s.seq)):
            self._queues[key].append(step)
        self.answer_nodes = answer_nodes
        self.live = live
        self.fork_at = fork_at
        self.action = action
        self.answered = 0
        self.answered_tasks: set[str] = set()  # recorded task ids whose whole update came from the tape
        # steps that contain the fork point (a subgraph around it) must run, not be answered
        self._around_fork: set[str] = set()
        if fork_at is not None:
            target = next(s for s in steps if s.seq == fork_at)
            ids = {task for _, task in ns_parts(target.namespace)}
            self._around_fork = {s.task_id for s in steps if s.task_id in ids}
        self._lock = threading.Lock()

    def answer(self, key: StepKey, step: Step) -> tuple[bool, Any]:
        with self._lock:
            queue = self._queues.get(key)
            rec = queue.popleft() if queue else None
        if rec is None:
            if self.fork_at is None and not self.live and step.node in self.answer_nodes:
                raise ReplayError(
                    f"replay diverged: step {step.seq} ({step.node}) has no recorded answer; pass live=True to call the model"
                )
            return False, None
        answered, value = self._decide(rec)
        if answered:
            with self._lock:
                self.answered += 1
                self.answered_tasks.add(rec.task_id)
        return answered, value

    def _decide(self, rec: Step) -> tuple[bool, Any]:
        usable = rec.error is None and not rec.interrupted
        if self.fork_at is None:
            return (True, rec.update) if usable and not self.live and rec.node in self.answer_nodes else (False, None)
        if rec.seq == self.fork_at:
            return (False, None) if self.action is None else (True, self.action)
        if rec.seq < self.fork_at and usable and rec.task_id not in self._around_fork:
            return True, rec.update
        return False, None


def replay(
    store: Store | str,
    run_id: str,
    graph: Any = None,
    *,
    fork_at: int | None = None,
    action: Any = None,
    live: bool = False,
    tags: Sequence[str] = (),
    import_recorded: str | None = None,
) -> ReplayResult:
    """Re-run a recorded run and store the new run; see the module docstring.

    `graph` is the graph that was recorded (compiled, recorded or not, a
    StateGraph, or a "module:attr" / "file.py:attr" string of your choosing).
    It is required: a store is data, possibly received from someone else, and
    replaying it never imports or calls the code it names (its `graph_path`).
    To import the recorded `graph_path` anyway, name it yourself:
    `import_recorded="agent.py:build"` must equal the run's `graph_path` and
    is refused unless the module lies inside the current directory (your
    project), so a store cannot point it at `os:abort`. `fork_at=N` forks at
    step N: `action`, when given, is returned as that step's update (for a
    decision node, the chosen action), otherwise the step runs live.
    `live=True` runs every node live, models included, and only compares.
    Recorded resumes (interrupts, retried failures) are applied in order.
    """
    store = Store(store) if not isinstance(store, Store) else store
    original = store.run(run_id)
    steps = store.steps(original.id)
    if not steps:
        raise ReplayError(f"run {original.id} has no recorded steps to replay")
    for where, value in [("input", original.input), *((f"step {s.seq}", s.update) for s in steps)]:
        reason = unreadable(value)
        if reason is not None:  # answering a step with a damaged value would replay something else
            raise StoreError(f"run {original.id}: {where} cannot be read ({reason}); cannot replay a damaged recording")
    if action is not None and fork_at is None:
        raise ReplayError("an action substitutes a step's update in a fork; give fork_at=N as well")
    if fork_at is not None and not any(s.seq == fork_at for s in steps):
        raise ReplayError(f"run {original.id} has steps 0..{max(s.seq for s in steps)}; cannot fork at step {fork_at}")
    target = _as_graph(_target(original, graph, import_recorded))
    nested = nested_graph_nodes(target)
    if fork_at is not None and action is not None:
        _check_substitutable(steps, fork_at, nested)

    model_steps = {c.step_seq for c in store.model_calls(original.id) if c.step_seq is not None}
    by_task = {s.task_id: s for s in steps if s.task_id}
    answer_nodes = {_swapped(s, by_task, nested).node for s in steps if s.action is not None or s.seq in model_steps}
    tape = _Tape(steps, answer_nodes, live=live, fork_at=fork_at, action=action)
    kind = "replay" if fork_at is None else "fork"
    run = Run(
        id=new_id(),
        graph=original.graph,
        graph_path=original.graph_path,
        kind=kind,
        input=original.input,
        task=original.task,
        parent_id=original.id,
        fork_step=fork_at,
        tags=tuple(tags),
        metadata={"replay": {"of": original.id, "live": live, "substituted": action is not None}},
    )
    writer = writer_for(store)
    writer.put("run", run)
    recorder = Recorder(
        run_id=run.id,
        writer=writer,
        decision_nodes=frozenset(s.node for s in steps if s.action is not None),
        cassette=tape,
        forbid_models=fork_at is None and not live,
        nested_parents=nested,
    )
    output, error, status = _drive(target, original, run, recorder)
    writer.flush(run_id=run.id)  # this replay's rows on disk (a loss of them raises here)

    new_steps = store.steps(run.id)
    # a step answered from the tape did not run: what ran inside it is not expected again
    expected = [s for s in steps if not _inside(s, tape.answered_tasks)]
    pairs, extra = pair_steps(expected, new_steps)
    divergence = first_divergence(expected, pairs, extra)
    if divergence is None and original.output is not None and canonical(original.output) != canonical(output):
        divergence = Divergence(None, "", canonical(original.output), canonical(output), "output differs")
    result = ReplayResult(
        run_id=run.id,
        parent_id=original.id,
        kind=kind,
        status=status,
        matched=divergence is None,
        steps=sum(1 for p in pairs.values() if p is not None),
        answered=tape.answered,
        divergence=divergence,
        output=output,
        error=error,
        fork_step=fork_at,
    )
    summary = {"of": original.id, "live": live, "matched": result.matched, "steps": result.steps, "answered": result.answered}
    if divergence is not None:
        summary["divergence"] = {"seq": divergence.seq, "node": divergence.node, "reason": divergence.reason}
    fields: dict[str, Any] = {"status": status, "error": error, "metadata": {"replay": summary}, "ended_at": time.time()}
    if output is not None:
        fields["output"] = output
    store.update_run(run.id, **fields)
    return result


def fork(store: Store | str, run_id: str, graph: Any = None, *, at: int, action: Any = None, tags: Sequence[str] = (),
         import_recorded: str | None = None) -> ReplayResult:
    """Branch a recorded run at step `at`: `replay(..., fork_at=at, action=action)`."""
    return replay(store, run_id, graph, fork_at=at, action=action, tags=tags, import_recorded=import_recorded)


async def areplay(store: Store | str, run_id: str, graph: Any = None, **kwargs: Any) -> ReplayResult:
    """`replay` for async code: it reads the store, re-runs the graph and writes the new run in a worker
    thread, so an event loop (a LangGraph Server, a notebook) goes on serving meanwhile."""
    return await asyncio.to_thread(replay, store, run_id, graph, **kwargs)


async def afork(store: Store | str, run_id: str, graph: Any = None, *, at: int, **kwargs: Any) -> ReplayResult:
    """`fork` for async code, off the event loop like `areplay`."""
    return await asyncio.to_thread(replay, store, run_id, graph, fork_at=at, **kwargs)


def _inside(step: Step, tasks: set[str]) -> bool:
    return bool(tasks) and any(task in tasks for _, task in ns_parts(step.namespace))


def _hidden_parent(step: Step, nested: frozenset[str]) -> tuple[str, str] | None:
    """(node, task id) of the outermost swapped node whose function called the graph `step` ran in."""
    return next(((name, task) for name, task in ns_parts(step.namespace) if name in nested), None)


def _swapped(step: Step, by_task: dict[str, Step], nested: frozenset[str]) -> Step:
    """`step` itself, or for a step inside a called graph the swapped step that called it."""
    parent = _hidden_parent(step, nested)
    return step if parent is None else by_task.get(parent[1], step)


def _check_substitutable(steps: Sequence[Step], fork_at: int, nested: frozenset[str]) -> None:
    """An action can replace only a step that trajgraph's node swap runs, not one inside a called graph."""
    target = next(s for s in steps if s.seq == fork_at)
    parent = _hidden_parent(target, nested)
    if parent is None:
        return
    outer = _swapped(target, {s.task_id: s for s in steps if s.task_id}, nested)
    where = f"node {parent[0]!r}" + (f" (step {outer.seq})" if outer is not target else "")
    raise ReplayError(
        f"step {fork_at} ({target.node}) ran inside a graph that {where} calls from its own function; "
        f"an action can be substituted at {where}, not inside it"
    )


def _drive(graph: Pregel, original: Run, run: Run, recorder: Recorder) -> tuple[Any, str | None, str]:
    """Run the instrumented graph on the recorded input, then on each recorded resume."""
    resumes = list(original.metadata.get("resumes") or [])
    if resumes and not graph.checkpointer:
        graph = Pregel.copy(graph, {"checkpointer": memory_checkpointer(graph)})  # strict: revives no named code
    config = RunnableConfig()
    if graph.checkpointer:  # a thread of its own: never continue one of the user's threads
        config = RunnableConfig(configurable={"thread_id": f"trajgraph-{run.kind}-{run.id}"})
    instrumented = instrument(graph)
    config = recorder_session(instrumented, recorder, config)
    output: Any = None
    result: tuple[Any, str | None, str] = (None, None, "succeeded")
    for inp in [original.input, *resumes]:  # a recorded resume follows an interrupt or a failure
        try:
            with model_calls_to(recorder):
                output = instrumented.invoke(inp, config)
        except TrajgraphError as exc:  # the cassette gave up: no point resuming
            return output, str(exc), "failed"
        except Exception as exc:  # the graph failed: as much a result as a success
            result = (output, f"{type(exc).__name__}: {exc}", "failed")
            continue
        if not (isinstance(output, dict) and "__interrupt__" in output):
            return output, None, "succeeded"
        output = {k: v for k, v in output.items() if k != "__interrupt__"}
        result = (output, None, "interrupted")
    return result


def load_graph(spec: str, *, within: Path | None = None) -> Pregel:
    """Import a graph from "module:attr" or "path/to/file.py:attr".

    The attribute may be a compiled graph, a StateGraph (compiled here) or a
    function of no arguments returning either. With `within`, the module must
    be a file under that folder, checked before anything is imported.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ReplayError(f"graph {spec!r} is not of the form module:attr (or file.py:attr)")
    if within is not None:
        _check_within(module_name, within)
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ReplayError(f"graph file {module_name} does not exist")
            spec_ = importlib.util.spec_from_file_location(f"_trajgraph_graph_{path.stem}", path)
            assert spec_ is not None and spec_.loader is not None
            module = importlib.util.module_from_spec(spec_)
            sys.modules[spec_.name] = module
            spec_.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReplayError(f"cannot import graph module {module_name!r}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ReplayError(f"module {module_name!r} has no attribute {attr!r}") from None
    return _as_graph(obj, spec)


def _check_within(module_name: str, root: Path) -> None:
    """Refuse a module that is not a file under `root`, without importing (or running) anything."""
    root = root.resolve()
    if module_name.endswith(".py"):
        origin: str | None = str(Path(module_name).resolve())
    else:
        top = module_name.split(".")[0]
        loaded = sys.modules.get(top)
        if loaded is not None:
            origin = getattr(loaded, "__file__", None)
        else:  # searches the path for the top-level name only: finding a submodule would run its package
            found = importlib.util.find_spec(top) if top.isidentifier() else None
            origin = None if found is None else (found.origin if found.has_location else None)
    if origin is None or not Path(origin).resolve().is_relative_to(root):
        where = "a built-in module" if origin is None else str(origin)
        raise ReplayError(
            f"refusing to import {module_name!r} ({where}): only a module inside {root} may be imported from a store's "
            "graph_path; pass the graph yourself (graph=, CLI --graph)"
        )


def _target(original: Run, graph: Any, import_recorded: str | None) -> Any:
    """The graph to replay against: the caller's, or the recorded graph_path the caller named and we allow."""
    if graph is not None:
        if import_recorded is not None:
            raise ReplayError("give graph= or import_recorded=, not both")
        return load_graph(graph) if isinstance(graph, str) else graph
    if import_recorded is None:
        named = f" (it names {original.graph_path!r}; import_recorded= that value to allow it)" if original.graph_path else ""
        raise ReplayError(
            f"replaying run {original.id} needs its graph: pass graph= (CLI: --graph module:attr); "
            f"trajgraph never imports the code a store names{named}"
        )
    if import_recorded != original.graph_path:
        raise ReplayError(f"import_recorded={import_recorded!r} is not the graph_path run {original.id} names ({original.graph_path!r})")
    return load_graph(import_recorded, within=Path.cwd())


def _as_graph(obj: Any, spec: str | None = None) -> Pregel:
    if isinstance(obj, Pregel):
        return obj
    if hasattr(obj, "compile") and callable(obj.compile):
        return _as_graph(obj.compile(), spec)
    if callable(obj) and spec is not None:
        try:
            made = obj()
        except Exception as exc:
            raise ReplayError(f"calling {spec}() to build the graph failed: {type(exc).__name__}: {exc}") from None
        return _as_graph(made, None)
    what = spec or type(obj).__name__
    raise ReplayError(f"{what} is not a LangGraph graph (a compiled graph, a StateGraph or a function returning one)")


__all__ = ["replay", "fork", "load_graph", "ReplayResult"]
