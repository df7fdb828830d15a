"""A conformance suite every trajgraph store backend passes (as LangGraph does for checkpointers).

Each check takes `make_store`, a function returning a fresh, empty, set-up store,
and raises AssertionError on a failure. `check_outage` also takes `outage(seconds)`,
which makes the database unreachable for that long (a Postgres server stopped and
started again with pg_ctl; an SQLite file held locked) and returns once it is back. Run them all from a backend's tests:

    from trajgraph.testing.store_suite import CHECKS

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    def test_conformance(check, tmp_path):
        counter = itertools.count()
        check(lambda: Store(tmp_path / f"{next(counter)}.db").setup())
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from trajgraph.errors import RunNotFoundError, StoreError
from trajgraph.store.json import canonical, from_jsonable, to_jsonable
from trajgraph.trajectory import ModelCall, PreferencePair, Run, SearchNode, Step, Trajectory

MakeStore = Callable[[], Any]


def _run(run_id: str, **kw: Any) -> Run:
    return Run(id=run_id, graph=kw.pop("graph", "g"), started_at=kw.pop("started_at", 1_000.0), **kw)


def _ai_with_call() -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1", "type": "tool_call"}])


def check_run_roundtrip(make_store: MakeStore) -> None:
    store = make_store()
    run = _run(
        "r1",
        graph_path="pkg.mod:graph",
        kind="record",
        status="succeeded",
        input={"messages": [HumanMessage(content="hi", id="m0")]},
        output={"answer": 3, "nested": [1, 2.5, None, True]},
        outcome=0.75,
        task="t-1",
        thread_id="th",
        tags=("a", "b"),
        metadata={"k": [1, 2], "s": "v"},
        error=None,
        ended_at=1_002.5,
    )
    store.write(runs=[run])
    got = store.run("r1")
    assert got.tags == ("a", "b") and got.metadata == {"k": [1, 2], "s": "v"}
    assert canonical(got.input) == canonical(run.input), got.input
    assert isinstance(got.input["messages"][0], HumanMessage)
    assert got.output == run.output and got.outcome == 0.75 and got.latency_s == 2.5
    assert (got.graph_path, got.task, got.thread_id, got.status) == ("pkg.mod:graph", "t-1", "th", "succeeded")


def check_steps_roundtrip_in_order(make_store: MakeStore) -> None:
    store = make_store()
    store.write(runs=[_run("r1")])
    steps = [
        Step(run_id="r1", seq=2, node="tools", lg_step=2, path="__pregel_push/0", update={"messages": [ToolMessage(content="3", tool_call_id="c1")]}),
        Step(run_id="r1", seq=0, node="agent", lg_step=1, path="__pregel_pull/agent", update={"messages": [_ai_with_call()]}, action={"messages": [_ai_with_call()]}, latency_ms=1.5),
        Step(run_id="r1", seq=1, node="inner", namespace="sub:abc", task_id="t9", reward=0.5, interrupted=True),
        Step(run_id="r1", seq=3, node="boom", error="ValueError: x"),
    ]
    store.write(steps=steps)
    got = store.steps("r1")
    assert [s.seq for s in got] == [0, 1, 2, 3]
    assert got[0].action["messages"][0].tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert isinstance(got[2].update["messages"][0], ToolMessage)
    assert (got[1].namespace, got[1].task_id, got[1].reward, got[1].interrupted) == ("sub:abc", "t9", 0.5, True)
    assert got[3].error == "ValueError: x" and got[3].update is None
    assert store.next_seq("r1") == 4 and store.next_seq("nobody") == 0
    assert [s.seq for s in store.iter_steps(["r1"])] == [0, 1, 2, 3]
    assert store.step_counts(["r1", "nobody"]) == {"r1": 4}


def check_model_calls_roundtrip(make_store: MakeStore) -> None:
    store = make_store()
    store.write(runs=[_run("r1")])
    call = ModelCall(
        run_id="r1",
        seq=0,
        step_seq=0,
        model="m",
        messages=[HumanMessage(content="hi")],
        response=_ai_with_call(),
        params={"temperature": 0.7},
        prompt_tokens=3,
        completion_tokens=4,
        token_ids=[1, 2, 3],
        logprobs=[-0.1, -0.2, -0.3],
    )
    store.write(model_calls=[call])
    (got,) = store.model_calls("r1")
    assert got.token_ids == [1, 2, 3] and got.logprobs == [-0.1, -0.2, -0.3]
    assert got.params == {"temperature": 0.7} and (got.prompt_tokens, got.completion_tokens) == (3, 4)
    assert got.response.tool_calls[0]["name"] == "add" and store.next_seq("r1", "model_calls") == 1


def check_model_call_prompt_sharing(make_store: MakeStore) -> None:
    """A call that extends an earlier call's prompt reads back whole (however the backend keeps it)."""
    store = make_store()
    store.write(runs=[_run("r1")])
    m = [HumanMessage(content="q"), _ai_with_call(), ToolMessage(content="3", tool_call_id="c1"), AIMessage(content="it is 3")]
    store.write(model_calls=[ModelCall(run_id="r1", seq=0, messages=m[:1])])
    store.write(model_calls=[ModelCall(run_id="r1", seq=1, messages=m[:3], prompt_ref=0, prompt_shared=1)])
    store.write(model_calls=[ModelCall(run_id="r1", seq=2, messages=m, prompt_ref=1, prompt_shared=3)])
    calls = store.model_calls("r1")
    assert [len(c.messages) for c in calls] == [1, 3, 4]
    assert [canonical(x) for x in calls[2].messages] == [canonical(x) for x in m]
    assert calls[2].prompt_ref == 1 and calls[2].prompt_shared == 3
    assert [len(c.messages) for c in store.model_calls() if c.run_id == "r1"] == [1, 3, 4]


def check_run_filters(make_store: MakeStore) -> None:
    store = make_store()
    store.write(
        runs=[
            _run("a1", graph="g1", status="succeeded", tags=("x",), started_at=100.0, kind="record", task="t1"),
            _run("a2", graph="g1", status="failed", tags=("x", "y"), started_at=200.0, kind="fork", parent_id="a1"),
            _run("b1", graph="g2", status="interrupted", started_at=300.0, kind="search", thread_id="th"),
        ]
    )
    ids = lambda runs: [r.id for r in runs]  # noqa: E731
    assert ids(store.runs()) == ["b1", "a2", "a1"]
    assert ids(store.runs(newest_first=False)) == ["a1", "a2", "b1"]
    assert ids(store.runs(graph="g1")) == ["a2", "a1"]
    assert ids(store.runs(status="failed")) == ["a2"]
    assert ids(store.runs(tag="x")) == ["a2", "a1"] and ids(store.runs(tag="y")) == ["a2"]
    assert ids(store.runs(kind="search")) == ["b1"] and ids(store.runs(task="t1")) == ["a1"]
    assert ids(store.runs(parent_id="a1")) == ["a2"] and ids(store.runs(thread_id="th")) == ["b1"]
    assert ids(store.runs(since=150.0)) == ["b1", "a2"] and ids(store.runs(until=250.0)) == ["a2", "a1"]
    assert ids(store.runs(limit=1)) == ["b1"]
    assert ids(store.runs(graph="g1", tag="y", status="failed")) == ["a2"]
    assert store.runs(graph="nope") == []


def check_run_lookup_by_prefix(make_store: MakeStore) -> None:
    store = make_store()
    store.write(runs=[_run("abc123"), _run("abd456")])
    assert store.run("abc").id == "abc123" and store.run("abd456").id == "abd456"
    for bad in ("ab", "zzz", "%"):
        try:
            store.run(bad)
        except RunNotFoundError as exc:
            assert "\n" not in str(exc) and bad.strip("%") in str(exc)
        else:
            raise AssertionError(f"run({bad!r}) should raise RunNotFoundError")


def check_run_updates_and_tags(make_store: MakeStore) -> None:
    store = make_store()
    store.write(runs=[_run("r1", tags=("old",))])
    store.update_run("r1", status="failed", error="E: x", tags=("new",), metadata={"m": 1}, output={"o": 1})
    got = store.run("r1")
    assert (got.status, got.error, got.tags, got.metadata, got.output) == ("failed", "E: x", ("new",), {"m": 1}, {"o": 1})
    assert store.runs(tag="old") == [] and [r.id for r in store.runs(tag="new")] == ["r1"]
    store.write(runs=[got.replace(status="succeeded")])  # rewriting a run replaces it
    assert store.run("r1").status == "succeeded" and store.count("runs") == 1


def check_rewriting_a_run_keeps_its_rows(make_store: MakeStore) -> None:
    """Writing a run again (a status change, new metadata) updates it; its steps, calls, nodes and pairs stay."""
    store = make_store()
    store.write(runs=[_run("r1"), _run("r2", parent_id="r1")], steps=[Step(run_id="r1", seq=0, node="a"), Step(run_id="r1", seq=1, node="b")],
                search_nodes=[SearchNode(run_id="r1", id=0)], pairs=[PreferencePair(run_id="r1", source="rro", prompt={"task": "t"})])
    store.write(runs=[store.run("r1").replace(status="succeeded", metadata={"again": True})])
    assert store.run("r1").status == "succeeded" and store.run("r1").metadata == {"again": True}
    assert [s.node for s in store.steps("r1")] == ["a", "b"]
    assert len(store.search_nodes("r1")) == 1 and len(store.pairs(run_id="r1")) == 1
    assert store.run("r2").parent_id == "r1" and store.count("runs") == 2
    store.write(steps=[Step(run_id="r1", seq=1, node="b2")])  # a step written again replaces that step only
    assert [s.node for s in store.steps("r1")] == ["a", "b2"]


def check_run_id_prefix_is_literal(make_store: MakeStore) -> None:
    store = make_store()
    store.write(runs=[_run("abX123")])
    for wildcard in ("ab_", "ab%", "a_X"):
        try:
            store.run(wildcard)
        except RunNotFoundError:
            continue
        raise AssertionError(f"run({wildcard!r}) matched as a pattern")


def check_write_is_atomic(make_store: MakeStore) -> None:
    store = make_store()
    store.write(runs=[_run("r1")])
    try:  # the second step points at a run that does not exist: the whole batch must fail
        store.write(steps=[Step(run_id="r1", seq=0, node="a"), Step(run_id="ghost", seq=0, node="a")])
    except Exception:
        pass
    else:
        raise AssertionError("a step of an unknown run was accepted")
    assert store.steps("r1") == [] and store.count("steps") == 0


def check_search_nodes_and_pairs(make_store: MakeStore) -> None:
    store = make_store()
    store.write(runs=[_run("s1", kind="search")])
    nodes = [
        SearchNode(run_id="s1", id=0, action_text="", visits=3),
        SearchNode(run_id="s1", id=1, parent_id=0, depth=1, action={"action": "left"}, action_text="left", score=0.2, value=0.5, visits=2, chosen=True),
        SearchNode(run_id="s1", id=2, parent_id=0, depth=1, action={"action": "jump"}, action_text="jump", outcome=0.3, terminal=True, invalid=False, reason="trap"),
    ]
    pairs = [
        PreferencePair(run_id="s1", source="mcts", prompt={"task": "t", "history": []}, chosen={"action": {"action": "left"}, "text": "left"}, rejected={"action": {"action": "jump"}, "text": "jump"}, chosen_score=0.5, rejected_score=0.3, node_id=0, chosen_node=1, rejected_node=2, task="t"),
        PreferencePair(run_id="s1", source="rro", prompt="p", chosen="c", rejected="r"),
    ]
    store.write(search_nodes=nodes, pairs=pairs)
    got = store.search_nodes("s1")
    assert [n.id for n in got] == [0, 1, 2] and got[1].chosen and got[2].terminal and not got[2].chosen
    assert got[1].action == {"action": "left"} and got[2].reason == "trap" and got[1].value == 0.5
    assert [p.source for p in store.pairs(run_id="s1")] == ["mcts", "rro"]
    (mcts,) = store.pairs(source="mcts")
    assert mcts.chosen["text"] == "left" and mcts.rejected_node == 2 and mcts.prompt == {"task": "t", "history": []}
    assert store.count("search_nodes") == 3 and store.count("pairs") == 2


def check_trajectory_json_roundtrip(make_store: MakeStore) -> None:
    store = make_store()
    store.write(
        runs=[_run("r1", input={"messages": [HumanMessage(content="q")]}, status="succeeded")],
        steps=[Step(run_id="r1", seq=0, node="agent", update={"messages": [_ai_with_call()]}, action={"messages": [_ai_with_call()]})],
        model_calls=[ModelCall(run_id="r1", seq=0, step_seq=0, messages=[HumanMessage(content="q")], response=_ai_with_call())],
    )
    traj = store.trajectory("r1")
    text = json.dumps(canonical(traj.to_dict()))
    # the JSON round trip: to_jsonable(escape=True) on the way out (escapes user keys that look like tags), from_jsonable back
    back = Trajectory.from_dict(from_jsonable(json.loads(json.dumps(to_jsonable(traj.to_dict(), escape=True), default=_fail_on_object))))
    assert json.dumps(canonical(back.to_dict())) == text
    assert back.run.id == "r1" and len(back.steps) == 1 and len(back.model_calls) == 1 and len(back.actions) == 1


def _fail_on_object(value: Any) -> Any:
    raise TypeError(f"to_jsonable left a {type(value).__name__} in the JSON form")


def check_unknown_objects_stored_as_text(make_store: MakeStore) -> None:
    """Objects JSON cannot hold are kept as their repr (marked), even when the repr raises: never pickled."""

    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    store = make_store()
    store.write(runs=[_run("r1", output={"x": Opaque(), "h": Hostile()})])
    out = store.run("r1").output
    assert out["x"] == {"__repr__": "<Opaque>"}, out
    assert "repr raised RuntimeError" in out["h"]["__repr__"], out


def check_values_round_trip_without_silent_change(make_store: MakeStore) -> None:
    """What JSON has no form for comes back as it went in (or marked): NaN/inf, bytes, a lone
    surrogate, dicts with both 1 and "1" keys, big ints, and user data shaped like the store's own tags."""
    values = {
        "nan_inf": [float("inf"), float("-inf")],
        "bytes": b"\x00\xff",
        "surrogate": "caf\udce9.txt",  # os.fsdecode of a Latin-1 file name
        "keys": {1: "int", "1": "str", (2, 3): "tuple"},
        "big": 2**80,
        "lookalikes": {"__lc_message__": 1, "__send__": {"node": "x"}, "~__send__": 2, "__repr__": "mine"},
    }
    store = make_store()
    store.write(runs=[_run("r1", output=values, input={"x": {"__command__": {"goto": "a"}}})])
    store.write(steps=[Step(run_id="r1", seq=0, node="n", update={"v": float("nan")}, error="OSError: caf\udce9.txt")])
    run = store.run("r1")
    assert run.output == values and run.input == {"x": {"__command__": {"goto": "a"}}}, run.output
    (step,) = store.steps("r1")
    assert math.isnan(step.update["v"]) and step.error is not None and "caf" in step.error
    assert store.runs()[0].id == "r1"  # the listing reads the whole row too


def check_write_errors_are_store_errors(make_store: MakeStore) -> None:
    """A write the database refuses raises StoreError (one line), not the driver's own error, and lands nothing."""
    store = make_store()
    try:
        store.write(runs=[_run("r1")], steps=[Step(run_id="no-such-run", seq=0, node="n")])
    except StoreError as exc:
        assert "\n" not in str(exc), str(exc)
    else:
        raise AssertionError("a step of a run that is not in the store was accepted")
    assert store.count("runs") == 0 and store.count("steps") == 0


def check_concurrent_writers(make_store: MakeStore) -> None:
    """Threads sharing one store object each write their own run; nothing is lost."""
    store = make_store()
    n_threads, n_steps = 8, 40
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            store.write(runs=[_run(f"t{i}", started_at=time.time())])
            for seq in range(0, n_steps, 5):
                store.write(steps=[Step(run_id=f"t{i}", seq=s, node="n", update={"i": i, "s": s}) for s in range(seq, seq + 5)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.count("runs") == n_threads and store.count("steps") == n_threads * n_steps
    for i in range(n_threads):
        assert [s.update["s"] for s in store.steps(f"t{i}")] == list(range(n_steps))


def _write_from_child(store: Any, worker: int, n_steps: int) -> None:
    """One process's share of `check_processes_writing_at_once` (its store object came across fork)."""
    store.write(runs=[_run(f"p{worker}", started_at=time.time())])
    for seq in range(0, n_steps, 10):
        store.write(steps=[Step(run_id=f"p{worker}", seq=s, node="n", update={"w": worker, "s": s}) for s in range(seq, seq + 10)])
    store.update_run(f"p{worker}", status="succeeded")


def check_processes_writing_at_once(make_store: MakeStore) -> None:
    """Several processes (real ones, forked) write to one store at the same time; nothing is lost."""
    import multiprocessing

    store = make_store()
    store.write(runs=[_run("parent")])  # the parent's connection is open when the children fork
    n_procs, n_steps = 4, 60
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_from_child, args=(store, i, n_steps)) for i in range(n_procs)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * n_procs, [p.exitcode for p in procs]
    assert store.count("runs") == n_procs + 1 and store.count("steps") == n_procs * n_steps
    for i in range(n_procs):
        assert store.run(f"p{i}").status == "succeeded"
        assert [s.update["s"] for s in store.steps(f"p{i}")] == list(range(n_steps))
    store.write(runs=[_run("after")])  # the parent's own connection still works after its children used theirs
    assert store.count("runs") == n_procs + 2


def check_process_stamp_lives_while_the_run_runs(make_store: MakeStore) -> None:
    """A running run names its process in `metadata.process`; a finished one does not; an interrupted one
    keeps naming the process that was running it (README: "its process is named in metadata.process")."""
    import os

    store = make_store()
    store.write(runs=[_run("a", metadata={"who": "me"})])
    assert store.run("a").metadata["process"]["pid"] == os.getpid() and store.run("a").status == "running"
    store.write(run_updates=[("a", {"status": "succeeded"})])
    assert store.run("a").metadata == {"who": "me"}, store.run("a").metadata  # finished: nothing of the process is left
    store.write(run_updates=[("a", {"status": "running"})])  # resumed
    assert store.run("a").metadata["process"]["pid"] == os.getpid()
    store.write(run_updates=[("a", {"status": "interrupted", "error": "stopped"})])
    assert store.run("a").metadata["process"]["pid"] == os.getpid() and store.run("a").metadata["who"] == "me"
    store.write(runs=[store.run("a").replace(status="failed")])  # a whole run written finished drops it too
    assert store.run("a").metadata == {"who": "me"}
    store.write(run_updates=[("a", {"status": "running", "metadata": {"new": 1}})])
    assert store.run("a").metadata == {"new": 1, "process": store.run("a").metadata["process"]}


def _start_run_and_die(store: Any) -> None:
    import os
    import signal

    store.write(runs=[_run("doomed", started_at=time.time())])
    os.kill(os.getpid(), signal.SIGKILL)


def check_killed_process_run_reads_interrupted_and_names_it(make_store: MakeStore) -> None:
    """A run whose process was killed reads as interrupted; marking it (on the next writable open) writes
    that down and keeps `metadata.process` naming the dead process."""
    import multiprocessing
    import signal

    store = make_store()
    store.write(runs=[_run("alive", started_at=time.time())])  # this process's: never marked
    child = multiprocessing.get_context("fork").Process(target=_start_run_and_die, args=(store,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL, child.exitcode
    run = store.run("doomed")
    assert run.status == "interrupted" and "ended without finishing" in (run.error or "") and f"pid {child.pid}" in run.error
    assert store.mark_interrupted() == ["doomed"]
    marked = store.run("doomed")
    assert marked.status == "interrupted" and marked.metadata["process"]["pid"] == child.pid, marked.metadata
    assert store.run("alive").status == "running" and store.mark_interrupted() == []


def check_custom_redact(make_store: MakeStore) -> None:
    """The store's `redact` rewrites every text it writes (JSON and plain text); None writes text as it is."""
    store = make_store()
    store.redact = lambda text: text.replace("hunter2", "[redacted]")
    store.write(runs=[_run("r1", input={"pw": "hunter2"}, error="login hunter2 failed")],
                steps=[Step(run_id="r1", seq=0, node="n", update={"obs": "typed hunter2"}, error="E: hunter2")],
                search_nodes=[SearchNode(run_id="r1", id=0, observation="hunter2 seen", action_text="say hunter2")])
    run, (step,), (node,) = store.run("r1"), store.steps("r1"), store.search_nodes("r1")
    texts = [json.dumps(run.input), run.error, json.dumps(step.update), step.error, node.observation, node.action_text]
    assert all("hunter2" not in t and "[redacted]" in t for t in texts), texts
    store.redact = None
    store.write(steps=[Step(run_id="r1", seq=1, node="n", update={"obs": "hunter2"})])
    assert store.steps("r1")[1].update == {"obs": "hunter2"}


def check_full_text_search(make_store: MakeStore) -> None:
    """`search(text)` finds runs by a word of what they were given, said and did, kept in sync on every write."""
    store = make_store()
    store.write(
        runs=[_run("r1", input={"messages": [HumanMessage(content="Find the golden key")]}), _run("r2"), _run("r3", error="KeyError: zebra")],
        steps=[
            Step(run_id="r1", seq=0, node="env", update={"observation": "You are in a kitchen.\nA wooden Door leads north."}),
            Step(run_id="r1", seq=1, node="policy", action={"action": "open door"}, update={"action": "open door"}),
            Step(run_id="r2", seq=0, node="env", update={"observation": "A dusty attic"}, error="ValueError: lantern broke"),
        ],
        model_calls=[ModelCall(run_id="r2", seq=0, messages=[HumanMessage(content="what about the chandelier?")], response=AIMessage(content="it sparkles"))],
        search_nodes=[SearchNode(run_id="r3", id=4, action_text="climb ladder", observation="a trapdoor creaks")],
    )
    hits = store.search("wooden")  # the word after a line break of an observation
    assert [(h.run_id, h.table, h.key) for h in hits] == [("r1", "steps", 0)], hits
    assert "wooden" in hits[0].snippet.lower() and hits[0].column == "update"
    assert {(h.run_id, h.table, h.key) for h in store.search("DOOR")} >= {("r1", "steps", 0), ("r1", "steps", 1)}
    assert [(h.run_id, h.table) for h in store.search("golden key")] == [("r1", "runs")]
    assert [(h.run_id, h.table, h.key) for h in store.search("chandelier")] == [("r2", "model_calls", 0)]
    assert [(h.run_id, h.table) for h in store.search("sparkles")] == [("r2", "model_calls")]
    assert [(h.run_id, h.table, h.key) for h in store.search("lantern")] == [("r2", "steps", 0)]
    assert [(h.run_id, h.table) for h in store.search("zebra")] == [("r3", "runs")]
    assert [(h.run_id, h.table, h.key) for h in store.search("trapdoor")] == [("r3", "search_nodes", 4)]
    assert store.search("golden zebra") == [] and store.search("nowhere") == []  # every word must match
    store.write(steps=[Step(run_id="r1", seq=0, node="env", update={"observation": "An empty hall"})])  # rewritten
    assert store.search("wooden") == [] and [h.key for h in store.search("hall")] == [0]
    store.update_run("r3", status="failed", error="KeyError: giraffe")
    assert store.search("zebra") == [] and [h.run_id for h in store.search("giraffe")] == ["r3"]
    store.delete_runs(["r2"])
    assert store.search("chandelier") == [] and store.search("lantern") == []
    assert [r.id for r in store.runs(ids=[h.run_id for h in store.search("door")])] == ["r1"]
    try:
        store.search("  ?! ")
    except StoreError as exc:
        assert "no word" in str(exc)
    else:
        raise AssertionError("a search without a word was accepted")


def check_outage(make_store: MakeStore, outage: Callable[[float], None], seconds: float = 3.0) -> None:
    """The database goes away for `seconds` (`outage(seconds)` returns once it is back) while runs are written:
    writes wait within the store's `write_deadline_s` and land whole; a run started during the outage is
    kept whole; no run is marked interrupted, since its process lives."""
    store = make_store()
    assert store.write_deadline_s > seconds + 2, f"the store's write deadline ({store.write_deadline_s} s) must outlast the outage"
    store.write(runs=[_run("before", started_at=time.time())], steps=[Step(run_id="before", seq=0, node="n")])
    errors: list[BaseException] = []
    during = threading.Thread(target=outage, args=(seconds,))
    during.start()
    time.sleep(min(1.0, seconds / 3))  # the database is away now

    def write_during() -> None:
        try:
            store.write(steps=[Step(run_id="before", seq=s, node="n", update={"s": s}) for s in range(1, 4)])
            store.write(runs=[_run("started-during", started_at=time.time())],
                        steps=[Step(run_id="started-during", seq=s, node="n") for s in range(5)])
            store.write(run_updates=[("before", {"status": "succeeded"})])
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write_during)
    writer.start()
    during.join()
    writer.join(store.write_deadline_s + 30)
    assert not writer.is_alive() and not errors, errors
    assert [s.seq for s in store.steps("before")] == [0, 1, 2, 3] and store.run("before").status == "succeeded"
    assert [s.seq for s in store.steps("started-during")] == [0, 1, 2, 3, 4]
    assert store.run("started-during").status == "running" and store.mark_interrupted() == []


CHECKS: list[Callable[[MakeStore], None]] = [
    check_run_roundtrip,
    check_steps_roundtrip_in_order,
    check_model_calls_roundtrip,
    check_model_call_prompt_sharing,
    check_run_filters,
    check_run_lookup_by_prefix,
    check_run_updates_and_tags,
    check_rewriting_a_run_keeps_its_rows,
    check_run_id_prefix_is_literal,
    check_write_is_atomic,
    check_search_nodes_and_pairs,
    check_trajectory_json_roundtrip,
    check_unknown_objects_stored_as_text,
    check_values_round_trip_without_silent_change,
    check_write_errors_are_store_errors,
    check_concurrent_writers,
    check_processes_writing_at_once,
    check_process_stamp_lives_while_the_run_runs,
    check_killed_process_run_reads_interrupted_and_names_it,
    check_custom_redact,
    check_full_text_search,
]


def run_store_suite(make_store: MakeStore, outage: Callable[[float], None] | None = None) -> None:
    """Run every check (and `check_outage` when given a way to make the database go away); the first failure raises."""
    for check in CHECKS:
        check(make_store)
    if outage is not None:
        check_outage(make_store, outage)


__all__ = ["CHECKS", "check_outage", "run_store_suite", *[c.__name__ for c in CHECKS]]
