"""Runs survive their process (issue 11, item 2): SIGTERM ends a recorded run as interrupted with its
rows flushed; a run whose process was killed (SIGKILL) reads as interrupted, not running forever."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

import trajgraph as tg
from trajgraph.errors import StoreError
from trajgraph.store import Store

_SLOW = """
import sys, time
import trajgraph as tg
from typing import TypedDict
from langgraph.graph import StateGraph, START, END

class S(TypedDict):
    i: int

def tick(state):
    if state["i"] == 60:  # park inside a node and say so: the signal then lands mid-step, never between steps
        open(sys.argv[2], "w").close()
        time.sleep(60)
    time.sleep(0.004)
    return {"i": state["i"] + 1}

g = StateGraph(S)
g.add_node("tick", tick)
g.add_edge(START, "tick")
g.add_conditional_edges("tick", lambda s: END if s["i"] >= 100000 else "tick", ["tick", END])
graph = tg.record(g.compile(), store=tg.Store(sys.argv[1]), name="slow")
graph.invoke({"i": 0}, {"recursion_limit": 10**6})
"""


def _start_recorder(tmp_path: Path, db: Path) -> subprocess.Popen[bytes]:
    script = tmp_path / "slow.py"
    script.write_text(_SLOW)
    parked = tmp_path / "parked"
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(parked)], stderr=subprocess.PIPE)
    seen, deadline = 0, time.time() + 60
    while (seen < 50 or not parked.exists()) and time.time() < deadline:
        time.sleep(0.2)
        try:
            seen = Store(db, readonly=True).count("steps") if db.exists() else 0
        except StoreError:
            seen = 0  # schema not created yet
    assert seen >= 50 and parked.exists(), "the recorder never committed steps or never reached step 60"
    return proc


def test_sigterm_mid_recording_ends_the_run_interrupted_with_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    proc = _start_recorder(tmp_path, db)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert proc.returncode == -signal.SIGTERM  # it still dies as SIGTERM says
    raw = Store(db, readonly=True)
    (run,) = raw.runs()
    assert run.status == "interrupted" and "Terminated: SIGTERM" in (run.error or "")  # written by the run itself
    steps = raw.steps(run.id)
    assert [s.seq for s in steps] == list(range(61))  # every step up to the signal, flushed
    assert steps[-1].error is not None and "SIGTERM" in steps[-1].error  # the step it interrupted, as on Ctrl-C


def test_sigkill_mid_recording_is_noticed_on_the_next_open(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    proc = _start_recorder(tmp_path, db)
    proc.kill()
    proc.wait(30)
    (run,) = Store(db).runs()
    assert run.status == "interrupted" and f"pid {proc.pid}" in (run.error or "")


class S(TypedDict):
    seen: Any


def test_sigterm_handler_only_during_a_recorded_invoke_and_never_over_a_users(store: Store) -> None:
    g = StateGraph(S)
    g.add_node("look", lambda s: {"seen": signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL})
    g.add_edge(START, "look")
    g.add_edge("look", END)
    graph = tg.record(g.compile(), store=store)
    # start from the default whatever ran before in this process (a local Ray installs its own handler)
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def mine(signum: int, frame: Any) -> None:
        pass

    try:
        assert graph.invoke({"seen": None})["seen"] is True  # ours while the run is recorded
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # and the default again after
        signal.signal(signal.SIGTERM, mine)
        assert graph.invoke({"seen": None})["seen"] is True
        assert signal.getsignal(signal.SIGTERM) is mine  # a user's handler is left in place
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_process_stamp_lives_exactly_while_the_run_runs(store: Store) -> None:
    import os

    from trajgraph.trajectory import Run

    store.write(runs=[Run(id="a", graph="g", metadata={"who": "me"})])
    assert store.run("a").metadata["process"]["pid"] == os.getpid() and store.run("a").status == "running"
    store.write(run_updates=[("a", {"status": "succeeded"})])
    assert store.run("a").metadata == {"who": "me"}  # finished: nothing of the process is left
    store.write(run_updates=[("a", {"status": "running"})])  # resumed
    assert store.run("a").metadata["process"]["pid"] == os.getpid()
    store.write(run_updates=[("a", {"status": "interrupted"})])
    assert store.run("a").metadata["process"]["pid"] == os.getpid()  # an interrupted run names its process (README)


def test_a_stamp_from_another_pid_namespace_is_never_judged_dead() -> None:
    """Issue 21.6: a run is marked interrupted only when its process is really gone. A pid from another PID
    namespace on this host (another container) cannot be looked up here, so it is left running."""
    import subprocess
    import sys

    from trajgraph.store.liveness import gone, this_process

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = {**this_process(), "pid": int(done.stdout), "start": "boot:1"}  # a process of this host that has ended
    assert gone(dead)  # here: it is gone
    assert not gone({**dead, "ns": "pid:[1]"})  # stamped in another namespace: cannot tell, so not dead
