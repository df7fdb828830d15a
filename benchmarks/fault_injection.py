"""Fault injection: the whole lists of issues 11 and 21, tried for real, one row each.

    python benchmarks/fault_injection.py [--quick]

Columns: tried (how many cases), clear error (the caller got a typed, one-line
trajgraph error, or the store says what happened: a marked value, a run marked
interrupted/failed with its cause), traceback (a raw, untyped exception or a
traceback reached the user), rows lost (rows that were acknowledged, by a
returned invoke, a flush or a commit, and are not in the store), code executed
(a payload named by a store, checkpoint or value ran). The target is zero in
the last three. `kill -9` can only lose what was not committed yet (the writer
commits every 50 ms): that is reported apart, as "in flight at kill".

For a killed search, rows lost is not measured ("-"): the note gives the
nodes stored against the candidates proposed, but a candidate becomes a node
only once expanded, so their difference is not a loss.

Full disk runs on a 1 MB tmpfs when this runs as root with `mount` (else on
SQLite's `max_page_count`, the same SQLITE_FULL); the read-only folder on a
read-only bind mount (root) or a chmod 555 folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import emit
from langgraph.graph import END, START, StateGraph

import trajgraph as tg
import trajgraph.testing
import trajgraph.testing.hostile
from trajgraph.errors import TrajgraphError

ROOT = Path(__file__).resolve().parent.parent
Row = dict[str, Any]


def row(scenario: str, tried: int, clear: int, traceback: int = 0, lost: int | None = 0, executed: int = 0, note: str = "") -> Row:
    return {"scenario": scenario, "tried": tried, "clear error": clear, "traceback": traceback,
            "rows lost": lost, "code executed": executed, "note": note}


class S(TypedDict, total=False):
    value: Any
    n: int


def chain(first: Any, n: int = 4) -> Any:
    g = StateGraph(S)
    g.add_node("n0", lambda s: {"value": first, "n": 1})
    g.add_edge(START, "n0")
    for i in range(1, n):
        g.add_node(f"n{i}", lambda s, i=i: {"value": i, "n": i + 1})
        g.add_edge(f"n{i - 1}", f"n{i}")
    g.add_edge(f"n{n - 1}", END)
    return g.compile()


def _typed(exc: BaseException) -> bool:
    return isinstance(exc, TrajgraphError) and "\n" not in str(exc)


# -- hostile values ---------------------------------------------------------------------------


def _hostile_values() -> dict[str, Any]:
    return trajgraph.testing.hostile.hostile_values()  # the same values the reader tests use


def hostile_values(tmp: Path) -> Row:
    values = _hostile_values()
    store = tg.Store(tmp / "hostile.db")
    clear = tb = lost = 0
    for name, value in values.items():
        try:
            tg.record(chain(value), store=store, name=name).invoke({"n": 0})
        except TrajgraphError:
            clear += 1
            continue
        except Exception:
            tb += 1
            continue
        (run,) = store.runs(graph=name)
        steps = store.steps(run.id)
        lost += 4 - len(steps)
        stored = steps[0].update["value"] if steps else None
        same = _same(stored, value)
        marked = isinstance(stored, dict) and any(k in stored for k in ("__tg_unstored__", "__repr__"))
        clear += int(run.status == "succeeded" and (same or marked))
    listing = subprocess.run([sys.executable, "-m", "trajgraph.cli", "runs", "--db", str(store.path)], capture_output=True, text=True)
    tb += int("Traceback" in listing.stderr or listing.returncode != 0)
    return row(f"hostile values ({len(values)} kinds) in a recorded run", len(values), clear, tb, lost,
               note="kept exactly, or marked with the reason; `trajgraph runs` lists them")


def _same(a: Any, b: Any) -> bool:
    try:
        import numpy as np

        if isinstance(b, np.ndarray):
            return isinstance(a, np.ndarray) and a.dtype == b.dtype and bool((a == b).all())
        if isinstance(b, list) and b and isinstance(b[0], float):
            return len(a) == len(b) and all((x == y) or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))
        return bool(a == b)
    except Exception:
        return False


# -- storage failures ---------------------------------------------------------------------------


def _tiny_fs(tmp: Path, size: str = "1m") -> tuple[Path, Callable[[], object]] | None:
    if os.geteuid() != 0:
        return None
    mnt = tmp / "tinyfs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True).returncode:
        return None
    return mnt, lambda: subprocess.run(["umount", "-l", str(mnt)], check=False)


def full_disk(tmp: Path) -> Row:
    fs = _tiny_fs(tmp)
    if fs is not None:
        path, undo = fs[0] / "runs.db", fs[1]
        where = "1 MB tmpfs"
    else:
        path, undo, where = tmp / "full.db", (lambda: None), "max_page_count"
    store = tg.Store(path).setup()
    if fs is None:
        store.db.conn.execute(f"PRAGMA max_page_count = {store.db.conn.execute('PRAGMA page_count').fetchone()[0] + 200}")
    tried = clear = tb = lost = 0
    acknowledged: list[str] = []
    try:
        for i in range(40):  # 40 runs of 4 steps, each ~60 KB: the disk fills midway
            tried += 1
            try:
                tg.record(chain("x" * 60_000), store=store, name=f"r{i}").invoke({"n": 0})
                acknowledged.append(f"r{i}")
            except TrajgraphError as exc:
                clear += int(_typed(exc) and "full" in str(exc) and "cannot rollback" not in str(exc))
            except Exception:
                tb += 1
        for name in acknowledged:
            runs = store.runs(graph=name)
            lost += 4 - (len(store.steps(runs[0].id)) if runs else 0)
        failed = [r for r in store.runs() if r.status == "failed" and "full" in (r.error or "")]
    finally:
        store.close() if fs is None else None
        undo()
    return row(f"full disk ({where})", tried, clear + len(acknowledged), tb, lost,
               note=f"{len(acknowledged)} runs stored whole; {tried - len(acknowledged)} raised StoreError "
                    f"('database or disk is full'), {len(failed)} of them still marked failed with the cause")


def read_only_store(tmp: Path) -> Row:
    tried = clear = tb = 0
    # a store SQLite refuses to write (what a read-only file gives): invoke raises, nothing silent
    store = tg.Store(tmp / "ro.db").setup()
    store.db.conn.execute("PRAGMA query_only = ON")
    for case in range(2):
        tried += 1
        try:
            tg.record(chain(case), store=store).invoke({"n": 0})
        except TrajgraphError as exc:
            clear += int(_typed(exc) and "readonly" in str(exc))
        except Exception:
            tb += 1
    # a WAL store in a read-only folder: a permissions problem, not "corrupt"
    folder = tmp / "rofolder"
    folder.mkdir()
    with tg.Store(folder / "runs.db") as s:
        s.write(runs=[tg.Run(id="r1", graph="g")])
    undo = _read_only(folder)
    try:
        tried += 2
        try:
            tg.Store(folder / "runs.db").setup()
        except TrajgraphError as exc:
            clear += int(_typed(exc) and "permissions" in str(exc) and "corrupt" not in str(exc))
        except Exception:
            tb += 1
        cli = subprocess.run([sys.executable, "-m", "trajgraph.cli", "runs", "--db", str(folder / "runs.db")],
                             capture_output=True, text=True)
        tb += int("Traceback" in cli.stderr)
        clear += int(cli.returncode == 0 or ("corrupt" not in cli.stderr and cli.stderr.count("\n") <= 1))
    finally:
        undo()
    return row("read-only store (file, folder)", tried, clear, tb,
               note="StoreError '...readonly...' at the end of invoke; a read-only folder is named a permissions problem")


def _read_only(folder: Path) -> Callable[[], object]:
    if os.geteuid() == 0 and not subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True).returncode:
        return lambda: subprocess.run(["umount", "-l", str(folder)], check=False) and None
    folder.chmod(0o555)
    return lambda: folder.chmod(0o755)


# -- killed processes -----------------------------------------------------------------------------

_RECORDER = textwrap.dedent("""
    import sys, time
    import trajgraph as tg
    from typing import TypedDict
    from langgraph.graph import StateGraph, START, END

    class S(TypedDict):
        i: int

    def tick(state):
        time.sleep(0.004)
        print(state["i"] + 1, flush=True)  # the step is done
        return {"i": state["i"] + 1}

    g = StateGraph(S)
    g.add_node("tick", tick)
    g.add_edge(START, "tick")
    g.add_conditional_edges("tick", lambda s: END if s["i"] >= 100000 else "tick", ["tick", END])
    tg.record(g.compile(), store=tg.Store(sys.argv[1]), name="slow").invoke({"i": 0}, {"recursion_limit": 10**6})
""")

_SEARCHER = textwrap.dedent("""
    import sys, time, asyncio
    import trajgraph as tg
    from trajgraph.testing import deceptive_chain_graph
    from trajgraph.testing.chain import chain_solution, chain_start

    solution = chain_solution(1, 2000)

    class Slow:  # the right door and one wrong one: a long search that does not end by itself
        name = "slow"
        calls = 0
        async def propose(self, state, k):
            await asyncio.sleep(0.02)
            Slow.calls += k
            print(Slow.calls, flush=True)
            right = solution[state["pos"]]
            return [{"action": a} for a in [right, "jump"][:k]]

    tg.search(deceptive_chain_graph(depth=2000, seed=1), chain_start(), decision_node="policy", optimizer=tg.MCTS(k=2),
              policy=Slow(), store=tg.Store(sys.argv[1]), budget=tg.Budget(policy_calls=100000))
""")


def _killed(tmp: Path, script: str, sig: int, what: str) -> dict[str, Any]:
    db = tmp / f"{what}-{sig}.db"
    path = tmp / f"{what}.py"
    path.write_text(script)
    proc = subprocess.Popen([sys.executable, str(path), str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done, deadline = 0, time.time() + 90
    assert proc.stdout is not None
    for line in proc.stdout:  # let it work for a while
        done = int(line)
        if done >= 300 or time.time() > deadline:
            break
    time.sleep(0.3)
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=60)
    done = max([done, *(int(x) for x in rest.split())])
    store = tg.Store(db)
    runs = store.runs()
    return {"runs": runs, "done": done, "store": store, "stderr": err, "code": proc.returncode}


def killed_recording(tmp: Path, sig: int) -> Row:
    got = _killed(tmp, _RECORDER, sig, "record")
    (run,) = got["runs"]
    stored = len([s for s in got["store"].steps(run.id) if s.error is None])
    name = "SIGKILL" if sig == signal.SIGKILL else "SIGTERM"
    gap = got["done"] - stored
    clear = int(run.status == "interrupted")
    tb = int(sig == signal.SIGTERM and "Traceback" in got["stderr"] and "Terminated" not in got["stderr"])
    if sig == signal.SIGTERM:  # flushed on SIGTERM: every finished step must be there
        return row(f"{name} mid-recording", 1, clear, tb, max(gap, 0),
                   note=f"run '{run.status}' ({(run.error or '')[:40]}); {stored} of {got['done']} finished steps stored")
    return row(f"{name} mid-recording", 1, clear, 0, 0,
               note=f"run '{run.status}' on next open; {stored} of {got['done']} steps committed, {gap} in flight at kill")


def killed_search(tmp: Path, sig: int) -> Row:
    got = _killed(tmp, _SEARCHER, sig, "search")
    name = "SIGKILL" if sig == signal.SIGKILL else "SIGTERM"
    searches = [r for r in got["runs"] if r.kind == "search"]
    nodes = sum(len(got["store"].search_nodes(r.id)) for r in searches)
    clear = int(bool(searches) and all(r.status == "interrupted" for r in searches))
    status = searches[0].status if searches else "no run"
    # not measured: a proposed candidate becomes a node only once expanded, so candidates proposed
    # minus nodes stored is not a count of lost rows (the search streams each node as it completes)
    return row(f"{name} mid-search (MCTS)", 1, clear, 0, None,
               note=f"search run '{status}'; {nodes} tree nodes stored, {got['done']} candidates proposed")


# -- providers --------------------------------------------------------------------------------------


def providers(tmp: Path) -> Row:
    from trajgraph.testing.chain import chain_start, deceptive_chain_graph

    class Hang:
        name = "hang"

        async def propose(self, state: Any, k: int) -> list[Any]:
            await asyncio.sleep(3600)
            return []

    class Fail:
        name = "fail"

        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        async def propose(self, state: Any, k: int) -> list[Any]:
            raise self.exc

    store = tg.Store(tmp / "providers.db")
    tried = clear = tb = 0
    notes = []
    for policy, budget in ((Hang(), tg.Budget(policy_calls=20, wall_time_s=2)),
                           (Fail(TimeoutError("provider timed out")), tg.Budget(policy_calls=12)),
                           (Fail(RuntimeError("429 Too Many Requests")), tg.Budget(policy_calls=12))):
        tried += 1
        t0 = time.perf_counter()
        try:
            result = tg.search(deceptive_chain_graph(depth=3), chain_start(), decision_node="policy", optimizer=tg.MCTS(k=2),
                               policy=policy, budget=budget, store=store)
            took = time.perf_counter() - t0
            honest = result.status != "succeeded" or result.finished
            clear += int(honest and took < 10)
            notes.append(f"{policy.name}: '{result.status}' in {took:.1f}s")
        except TrajgraphError:
            clear += 1
        except Exception as exc:
            tb += 1
            notes.append(f"{policy.name}: {type(exc).__name__}")
    # a recorded agent whose model raises: the run ends failed with the cause, rows kept
    tried += 1
    g = StateGraph(S)
    g.add_node("ok", lambda s: {"n": 1})

    def model(state: Any) -> Any:
        raise TimeoutError("provider hung up")

    g.add_node("agent", model)
    g.add_edge(START, "ok")
    g.add_edge("ok", "agent")
    g.add_edge("agent", END)
    try:
        tg.record(g.compile(), store=store, name="failing-model").invoke({"n": 0})
    except TimeoutError:
        (run,) = store.runs(graph="failing-model")
        clear += int(run.status == "failed" and "TimeoutError" in (run.error or "") and len(store.steps(run.id)) == 2)
    return row("hanging and failing providers", tried, clear, tb, note="; ".join(notes))


# -- a store naming a payload ------------------------------------------------------------------------


def payload_store(tmp: Path) -> Row:
    import pickle

    from trajgraph.testing.chain import chain_start, deceptive_chain_graph

    marker = tmp / "PWNED"
    payload = tmp / "payload.py"
    payload.write_text(f"open({str(marker)!r}, 'w').close()\ngraph = None\n")
    db = tmp / "received.db"
    store = tg.Store(db)
    tried = clear = tb = 0
    for named in (f"{payload}:graph", "os:abort", "payload.py:graph"):
        tg.record(deceptive_chain_graph(depth=2), store=store, graph_path=named).invoke(chain_start())
        run_id = store.runs()[0].id
        for kwargs in ({}, {"import_recorded": named}):
            tried += 1
            try:
                tg.replay(store, run_id, **cast(dict[str, Any], kwargs))
            except TrajgraphError as exc:
                clear += int(_typed(exc))
            except BaseException:
                tb += 1
        tried += 1
        cli = subprocess.run([sys.executable, "-m", "trajgraph.cli", "replay", run_id, "--db", str(db)],
                             capture_output=True, text=True, cwd=tmp)
        clear += int(cli.returncode == 2 and "Traceback" not in cli.stderr)
        tb += int("Traceback" in cli.stderr)
    store.close()

    class Touch:
        def __reduce__(self) -> Any:
            return (open, (str(marker), "w"))

    conn = sqlite3.connect(db)  # pickles where JSON belongs
    conn.execute("UPDATE runs SET output = ?", (pickle.dumps(Touch()),))
    conn.execute('UPDATE steps SET "update" = ?', (pickle.dumps(Touch()),))
    conn.commit()
    conn.close()
    for read in (lambda s: s.runs(), lambda s: [s.steps(r.id) for r in s.runs()], lambda s: tg.sft_dataset(s, success_threshold=None)):
        tried += 1
        try:
            read(tg.Store(db))
            clear += 1  # read, the pickles marked unreadable
        except TrajgraphError:
            clear += 1
        except Exception:
            tb += 1
    tried += 1
    crafted = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import langgraph.checkpoint.serde.jsonplus as jp, ormsgpack
        import trajgraph
        from trajgraph._internal.hermetic import memory_checkpointer
        blob = ormsgpack.packb(ormsgpack.Ext(jp.EXT_CONSTRUCTOR_POS_ARGS, ormsgpack.packb(("os", "system", ["touch {marker}"]))))
        print(memory_checkpointer().serde.loads_typed(("msgpack", blob)))
    """)], capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "LANGGRAPH_STRICT_MSGPACK"})
    clear += int(crafted.returncode == 0)
    return row("a store naming a payload (graph_path, pickles, checkpoint)", tried, clear, tb, executed=int(marker.exists()),
               note="replay needs graph=/--graph; import_recorded only inside cwd; pickles read as unreadable; strict checkpoints")


def secrets(tmp: Path) -> Row:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    key = "sk-proj-" + "Zz9" * 8
    model = FakeListChatModel(responses=["ok"])
    g = StateGraph(S)
    g.add_node("agent", lambda s: {"value": cast(str, model.invoke("hi", api_key=key).content) + f" Bearer {key}", "n": 1})
    g.add_edge(START, "agent")
    g.add_edge("agent", END)
    store = tg.Store(tmp / "secrets.db")
    tg.record(g.compile(), store=store).invoke({"n": 0})
    store.close()
    conn = sqlite3.connect(tmp / "secrets.db")
    leaked = sum(key in str(r) for t in ("runs", "steps", "model_calls") for r in conn.execute(f"SELECT * FROM {t}"))
    return row("a credential in call params and output", 1, int(leaked == 0), note=f"{leaked} rows hold the key")


# -- issue 21: readers, outputs, arguments, the terminal, the viewer, graph inputs ------------------------


def _cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trajgraph.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, errors="backslashreplace")


def _said_once(done: subprocess.CompletedProcess[str], code: int) -> bool:
    """Exit `code` with one `error:` line and no traceback (the CLI contract)."""
    lines = [x for x in done.stderr.splitlines() if x.strip() and "Loading weights" not in x]
    return done.returncode == code and len(lines) == 1 and lines[0].startswith("error: ") and "unexpected" not in lines[0]


def _traceback(done: subprocess.CompletedProcess[str]) -> int:
    return int("Traceback" in done.stderr or "unexpected" in done.stderr)


def _utf8_json(data: str | bytes, lines: bool = False) -> bool:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        text.encode("utf-8")
        for part in (text.splitlines() if lines else [text]):
            json.loads(part)
        return True
    except (UnicodeError, ValueError):
        return False


def hostile_readers(tmp: Path) -> Row:
    """Every reader over a store seeded with the hostile values: valid UTF-8 out, or a clear error."""
    import threading
    import urllib.request

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from trajgraph.learn.data import decisions, mc_preferences, preferences
    from trajgraph.reward.data import build_dataset
    from trajgraph.view.server import ViewServer

    db = trajgraph.testing.hostile.seeded_store(tmp / "hostile.db")
    tried = clear = tb = 0
    for kind in ("sft", "dpo", "prm"):
        for suffix in (".jsonl", ".parquet"):
            tried += 1
            out = tmp / f"{kind}{suffix}"
            done = _cli("export", kind, str(out), "--db", str(db))
            tb += _traceback(done)
            clear += int(done.returncode == 0 and (suffix == ".parquet" or _utf8_json(out.read_bytes(), lines=True)))
    runs = _cli("runs", "--json", "--db", str(db))
    tried += 1
    clear += int(runs.returncode == 0 and _utf8_json(runs.stdout))
    for run in json.loads(runs.stdout) if runs.returncode == 0 else []:
        tried += 1
        shown = subprocess.run([sys.executable, "-m", "trajgraph.cli", "show", run["id"], "--json", "--tree", "--db", str(db)],
                               capture_output=True, timeout=120)
        tb += int(b"Traceback" in shown.stderr)
        clear += int(shown.returncode == 0 and _utf8_json(shown.stdout))
    for read in (lambda: decisions(db), lambda: preferences(db), lambda: mc_preferences(db), lambda: build_dataset(tg.Store(db, readonly=True))):
        tried += 1
        try:
            got = read()
            clear += int(_utf8_json(json.dumps(repr(got), ensure_ascii=False)))
        except TrajgraphError:
            clear += 1
        except Exception:
            tb += 1
    tried += 1
    memory = InMemorySpanExporter()
    try:
        tg.export_spans(db, memory)
        encode_spans(memory.get_finished_spans()).SerializeToString()  # OTLP: protobuf strings are UTF-8
        clear += 1
    except Exception:
        tb += 1
    srv = ViewServer(db)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        ids = [r["id"] for r in json.loads(runs.stdout)] if runs.returncode == 0 else []
        for path in ["/api/runs", *(f"/api/{p}?id={i}" for i in ids for p in ("run", "steps", "turns", "tree"))]:
            tried += 1
            try:
                with urllib.request.urlopen(srv.url.rstrip("/") + path, timeout=20) as res:
                    clear += int(res.status == 200 and _utf8_json(res.read()))
            except Exception:
                tb += 1
    finally:
        srv.shutdown()
        srv.server_close()
    return row("every reader over a hostile store", tried, clear, tb,
               note="exports, runs/show --json, training data, spans, viewer API: valid UTF-8, \\udcxx escapes")


def span_delivery(tmp: Path) -> Row:
    """`export spans` to sinks that fail: one error line, the right exit code, within the deadline."""
    import http.server
    import socket
    import threading

    db = tmp / "spans.db"
    with tg.Store(db) as store:
        tg.record(chain("x"), store=store, name="spans").invoke({"n": 0})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = sock.getsockname()[1]

    class Answer500(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tried = clear = tb = 0
    notes = []
    try:
        for name, sink, code in (("refused port", f"http://127.0.0.1:{refused}/v1/traces", 1),
                                 ("HTTP 500", f"http://127.0.0.1:{server.server_address[1]}/v1/traces", 1),
                                 ("ftp://", "ftp://x", 2), ("/dev/full", "/dev/full", 1)):
            if name == "/dev/full" and not os.path.exists("/dev/full"):
                continue
            tried += 1
            t0 = time.perf_counter()
            done = _cli("export", "spans", sink, "--db", str(db), "--deadline", "2", cwd=tmp)
            clear += int(_said_once(done, code) and "exported" not in done.stdout)
            tb += _traceback(done)
            notes.append(f"{name} {time.perf_counter() - t0:.0f}s")
    finally:
        server.shutdown()
        server.server_close()
    tried += 1  # a reader that leaves: `| head -c 10`
    proc = subprocess.Popen([sys.executable, "-m", "trajgraph.cli", "export", "spans", "/dev/stdout", "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    clear += int(proc.wait(timeout=120) == 1 and "Traceback" not in err)
    tb += int("Traceback" in err)
    return row("span export to failing sinks", tried, clear, tb, note="; ".join(notes) + "; closed pipe silent, exit 1")


def cli_arguments(tmp: Path) -> Row:
    """Arguments and damaged stores: refused in one line (exit 2), never 'unexpected'."""
    import shutil

    db = tmp / "args.db"
    with tg.Store(db) as store:  # closed: committed before the file is copied
        tg.record(chain("x"), store=store, name="args").invoke({"n": 0})
    cases: list[tuple[tuple[str, ...], int]] = [
        (("runs", "--limit", str(10**23), "--db", str(db)), 0), (("runs", "--since", "nan", "--db", str(db)), 2),
        (("runs", "--min-outcome", "inf", "--db", str(db)), 2), (("reward", "train", str(tmp / "rm"), "--lr", "nan", "--db", str(db)), 2),
        (("runs", "--db", "a" * 100_000), 2), (("export", "sft", "/proc/x.jsonl", "--db", str(db)), 2),
        (("runs", "--tag", "caf\udce9", "--db", str(db)), 0), (("show", "caf\udce9", "--db", str(db)), 2),
    ]
    for damage in ("UPDATE _trajgraph_meta SET value='abc' WHERE key='schema_version'", "UPDATE runs SET started_at='yesterday'"):
        copy = tmp / f"damaged{len(cases)}.db"
        shutil.copy(db, copy)
        with sqlite3.connect(copy) as conn:
            conn.execute(damage)
        cases.append((("runs", "--db", str(copy)), 2))
    tried = clear = tb = 0
    for args, code in cases:
        tried += 1
        done = _cli(*args)
        tb += _traceback(done)
        clear += int(done.returncode == code and (code == 0 or _said_once(done, code)))
    return row("CLI arguments and damaged stores", tried, clear, tb,
               note="--limit 1e23, nan/inf, --lr nan, 100k --db, /proc, non-UTF-8, schema 'abc', text timestamps")


def diverging_training(tmp: Path) -> Row:
    db = trajgraph.testing.hostile.seeded_store(tmp / "train.db")
    done = _cli("reward", "train", str(tmp / "rm"), "--db", str(db), "--lr", "1e30", "--head-lr", "1e30", "--epochs", "1",
                "--probe-steps", "0", "--no-progress")
    ok = done.returncode != 0 and "diverged" in done.stderr and not (tmp / "rm").exists()
    return row("reward training that diverges (lr 1e30)", 1, int(ok), _traceback(done), note="NaN loss: one error line, no model saved")


def terminal(tmp: Path) -> Row:
    import pty

    db = trajgraph.testing.hostile.seeded_store(tmp / "tty.db")
    run = next(r.id for r in tg.Store(db, readonly=True).runs() if r.graph.startswith("escape"))
    tried = clear = 0
    for args in (("runs",), ("show", run), ("show", run, "--tree")):
        tried += 1
        master, slave = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "trajgraph.cli", *args, "--db", str(db)], stdin=slave, stdout=slave,
                                stderr=slave, env={**os.environ, "COLUMNS": "300"})
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        proc.wait(timeout=120)
        clear += int(proc.returncode == 0 and b"\x1b]0;TITLE" not in out and b"\x1b[2J" not in out and b"\xe2\x80\xae" not in out)
    return row("escape sequences shown on a terminal", tried, clear, note="title/clear-screen/bidi stored in names and steps: caret notation")


def viewer(tmp: Path) -> Row:
    import threading
    import urllib.error
    import urllib.request

    from trajgraph.view.server import ViewServer

    db = tmp / "view.db"
    with tg.Store(db) as store:
        run = tg.Run(id="big", graph="big", status="succeeded")
        store.add_run(run)
        store.write(steps=[tg.Step(run_id="big", seq=i, node="n", update={"observation": "x" * 100_000}) for i in range(100)])
    srv = ViewServer(db)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]

    def status(path: str, host: str | None = None) -> tuple[int, int]:
        req = urllib.request.Request(srv.url.rstrip("/") + path)
        if host:
            req.add_header("Host", host)
        try:
            with urllib.request.urlopen(req, timeout=20) as res:
                return res.status, len(res.read())
        except urllib.error.HTTPError as err:
            return err.code, 0
        except Exception:
            return -1, 0

    cases = [("/api/steps?id=big&offset=99999999999999999999999", None, 400), ("/api/tree?id=big&parent=99999999999999999999999", None, 400),
             ("/api/runs", "localhost:80@evil.com", 403), ("/api/runs", f"localhost:{port}@evil.com", 403), ("/api/runs", "evil.com", 403)]
    tried = clear = tb = 0
    try:
        for path, host, want in cases:
            tried += 1
            got, _ = status(path, host)
            clear += int(got == want)
            tb += int(got in (-1, 500))
        tried += 1
        got, size = status("/api/steps?id=big&limit=1000")
        clear += int(got == 200 and size < 1_200_000)
    finally:
        srv.shutdown()
        srv.server_close()
    return row("viewer: huge numbers, Host tricks, a 10 MB run", tried, clear, tb, note=f"a /api/steps page of 100 x 100 KB steps: {size / 1e6:.2f} MB")


def graph_inputs(tmp: Path) -> Row:
    from trajgraph.errors import InputError
    from trajgraph.graphs.env_loop import cliffwalking_graph, frozenlake_graph
    from trajgraph.graphs.sql_react import graph as sql

    env_bad: list[Any] = [{"pos": True}, {"pos": 0, "actions": 5}, {"pos": 0, "actions": [1]}, {"pos": 0, "history": "x"},
                          {"pos": 0, "score": "x"}, {"pos": 0, "task": 5}, {"pos": 0, "done": "yes"}, {"pos": 2**70}, {"pos": "0"}, []]
    sql_bad: list[Any] = [{"messages": [5]}, {"messages": [{"role": 1, "content": "x"}]}, {"messages": [{"content": "x"}]},
                          {"messages": [["user"]]}, {"messages": [{"role": "user", "content": 5}]}, {"messages": "x", "remaining_steps": True},
                          {"messages": [None]}, {"messages": [{"role": "alien", "content": "hi"}]}]
    tried = clear = tb = 0
    for graph, cases in ((frozenlake_graph(), env_bad), (cliffwalking_graph(), env_bad), (sql, sql_bad)):
        for bad in cases:
            tried += 1
            try:
                graph.invoke(bad, {"recursion_limit": 50})
            except InputError as exc:
                clear += int("\n" not in str(exc))
            except Exception:
                tb += 1
    return row("hostile inputs to the shipped graphs", tried, clear, tb, note="checked with the state schema's declared types")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the killed-process rows")
    args = parser.parse_args()
    logging.getLogger("trajgraph").setLevel(logging.CRITICAL)  # the losses it logs are what the table counts
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        steps: list[tuple[str, Callable[[Path], Row]]] = [
            ("hostile", hostile_values), ("full", full_disk), ("ro", read_only_store), ("providers", providers),
            ("payload", payload_store), ("secrets", secrets), ("readers", hostile_readers), ("spans", span_delivery),
            ("args", cli_arguments), ("diverge", diverging_training), ("tty", terminal), ("viewer", viewer), ("inputs", graph_inputs),
        ]
        if not args.quick:
            steps += [("kill9", lambda t: killed_recording(t, signal.SIGKILL)), ("term", lambda t: killed_recording(t, signal.SIGTERM)),
                      ("skill9", lambda t: killed_search(t, signal.SIGKILL)), ("sterm", lambda t: killed_search(t, signal.SIGTERM))]
        for name, step in steps:
            sub = tmp / name
            sub.mkdir()
            try:
                rows.append(step(sub))
            except Exception as exc:
                rows.append(row(name, 1, 0, 1, note=f"harness: {type(exc).__name__}: {exc}"[:120]))
    tried, clear, tb, lost, executed = (sum(r[c] or 0 for r in rows) for c in ("tried", "clear error", "traceback", "rows lost", "code executed"))
    totals = row("total", tried, clear, tb, lost, executed)
    for r in rows:
        r["rows lost"] = "-" if r["rows lost"] is None else r["rows lost"]
    emit("fault_injection", "Fault injection (issues 11 and 21): target 0 in traceback, rows lost, code executed", [*rows, totals])
    print(json.dumps({k: totals[k] for k in ("tried", "clear error", "traceback", "rows lost", "code executed")}))


if __name__ == "__main__":
    main()
