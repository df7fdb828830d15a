"""`trajgraph view`: a local, read-only web page over a store.

Standard library only (ThreadingHTTPServer), one static page with vanilla JS, no
CDN and no network. The store is opened with `mode=ro`; each API request reads
inside one read transaction, so a store being written shows a consistent state
at every request. Text from trajectories reaches the page only as JSON and is
put in the DOM with `textContent`; a strict Content-Security-Policy forbids
inline script as a second line of defence. Bound to 127.0.0.1 by default, and
requests naming another host are refused (DNS rebinding).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from trajgraph.export._chat import chat_message, readable_update
from trajgraph.export._read import RunFilter, effective_outcome
from trajgraph.store._json import to_jsonable
from trajgraph.errors import ConfigError, TrajgraphError
from trajgraph.render import render_action, render_observation, render_task, steps_to_turns
from trajgraph.store import Store
from trajgraph.trajectory import Run

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_MAX_RUNS = 500


class _Reader:
    """One read-only connection; each request reads in its own read transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()
        self.store = self._open()

    def _open(self) -> Store:
        store = Store(self.path, readonly=True).setup()
        tables = {r[0] for r in store.db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "runs" in tables:
            self.empty = False
            return store
        store.close()  # a file nobody has written yet: show an empty store until it has tables
        self.empty = True
        return Store(":memory:").setup()

    @contextmanager
    def read(self) -> Iterator[Store]:
        with self.lock:
            if self.empty:
                self.store.close()
                self.store = self._open()
            conn = self.store.db.conn
            conn.execute("BEGIN")
            try:
                yield self.store
            finally:
                conn.execute("ROLLBACK")

    def close(self) -> None:
        self.store.close()


# -- the JSON API --------------------------------------------------------------------------


def _summaries(db: Store, runs: list[Run]) -> list[dict[str, Any]]:
    """Runs as table rows, with step/call/node counts and the env's final reward in 4 queries."""
    ids = [r.id for r in runs]
    counts: dict[str, dict[str, Any]] = {i: {} for i in ids}
    if ids:
        marks = ",".join("?" * len(ids))
        for table, key in (("steps", "n_steps"), ("model_calls", "n_calls"), ("search_nodes", "n_nodes")):
            for row in db.db.query(f"SELECT run_id, COUNT(*) AS n FROM {table} WHERE run_id IN ({marks}) GROUP BY run_id", ids):
                counts[row["run_id"]][key] = row["n"]
        sql = (
            f'SELECT run_id, json_extract("update", \'$.reward\') AS reward FROM steps WHERE run_id IN ({marks}) '
            f'AND json_valid("update") AND json_extract("update", \'$.done\') = 1 ORDER BY seq'
        )
        for row in db.db.query(sql, ids):
            if isinstance(row["reward"], (int, float)):
                counts[row["run_id"]]["final_reward"] = float(row["reward"])
    out = []
    for run in runs:
        c = counts[run.id]
        outcome = run.outcome if run.outcome is not None else c.get("final_reward")
        out.append({
            "id": run.id, "graph": run.graph, "kind": run.kind, "status": run.status, "outcome": outcome,
            "task": run.task, "tags": list(run.tags), "parent_id": run.parent_id, "error": run.error,
            "started_at": run.started_at, "ended_at": run.ended_at, "latency_s": run.latency_s,
            "n_steps": c.get("n_steps", 0), "n_calls": c.get("n_calls", 0), "n_nodes": c.get("n_nodes", 0),
        })
    return out


def api_runs(db: Store, query: dict[str, str]) -> dict[str, Any]:
    filters = {k: v for k, v in query.items() if k in RunFilter.__dataclass_fields__ and v != ""}
    rf = RunFilter.of(**filters)
    runs = db.runs(graph=rf.graph, status=rf.status, tag=rf.tag, kind=rf.kind, task=rf.task,
                   since=rf.since, until=rf.until, limit=_MAX_RUNS)
    rows = _summaries(db, runs)
    lo, hi = rf.min_outcome, rf.max_outcome
    if lo is not None or hi is not None:
        rows = [r for r in rows if r["outcome"] is not None and (lo is None or r["outcome"] >= lo) and (hi is None or r["outcome"] <= hi)]
    facets = {
        col: [r[col] for r in db.db.query(f"SELECT DISTINCT {col} FROM runs ORDER BY {col}")]
        for col in ("graph", "status", "kind")
    }
    facets["tag"] = [r["tag"] for r in db.db.query("SELECT DISTINCT tag FROM run_tags ORDER BY tag")]
    return {"runs": rows, "facets": facets, "limit": _MAX_RUNS}


def api_run(db: Store, run_id: str) -> dict[str, Any]:
    run = db.run(run_id)
    steps = db.steps(run.id)
    calls = db.model_calls(run.id)
    by_step: dict[int | None, list[dict[str, Any]]] = {}
    for call in calls:
        by_step.setdefault(call.step_seq, []).append({
            "seq": call.seq, "model": call.model, "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens, "latency_ms": call.latency_ms, "error": call.error,
            "messages": [chat_message(m) for m in call.messages or []],
            "response": None if call.response is None else chat_message(call.response),
        })
    step_rows = [{
        "seq": s.seq, "node": s.node, "lg_step": s.lg_step, "namespace": s.namespace, "latency_ms": s.latency_ms,
        "started_at": s.started_at, "error": s.error, "reward": s.reward, "interrupted": s.interrupted,
        "decision": s.action is not None,
        "text": render_action(s.action) if s.action is not None else render_observation(s.update),
        "update": readable_update(s.update),
        "model_calls": by_step.pop(s.seq, []),
    } for s in steps]
    summary = _summaries(db, [run])[0]
    summary["outcome"] = effective_outcome(run, steps)
    nodes = [n.to_dict() for n in db.search_nodes(run.id)]
    for n in nodes:
        n["action"] = to_jsonable(n["action"])
    children = _summaries(db, db.runs(parent_id=run.id, newest_first=False))
    pairs = [{
        "source": p.source, "prompt": to_jsonable(p.prompt), "chosen": _side_text(p.chosen), "rejected": _side_text(p.rejected),
        "chosen_score": p.chosen_score, "rejected_score": p.rejected_score,
        "node_id": p.node_id, "chosen_node": p.chosen_node, "rejected_node": p.rejected_node,
    } for p in db.pairs(run_id=run.id)]
    return {
        "run": {**summary, "input": to_jsonable(run.input), "output": to_jsonable(run.output),
                "metadata": to_jsonable(run.metadata), "thread_id": run.thread_id, "fork_step": run.fork_step},
        "task_text": render_task(run.input),
        "steps": step_rows,
        "orphan_calls": [c for calls in by_step.values() for c in calls],
        "turns": [{"action": a, "observation": o} for a, o in steps_to_turns(steps)],
        "search_nodes": nodes,
        "children": children,
        "pairs": pairs,
    }


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _side_text(side: Any) -> str:
    if isinstance(side, dict) and side.get("text"):
        return str(side["text"])
    if isinstance(side, dict) and "action" in side:
        return render_action(side["action"])
    return render_action(side)


# -- HTTP ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "trajgraph-view"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet: it is a local tool
        pass

    def do_GET(self) -> None:
        if not self._host_ok():
            return self._send(HTTPStatus.FORBIDDEN, b"forbidden host\n", "text/plain; charset=utf-8")
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path in _STATIC:
            name, ctype = _STATIC[url.path]
            body = resources.files("trajgraph.view").joinpath(name).read_bytes()
            return self._send(HTTPStatus.OK, body, ctype)
        try:
            with self.server.reader.read() as db:
                if url.path == "/api/runs":
                    data = api_runs(db, query)
                elif url.path == "/api/run":
                    data = api_run(db, query.get("id", ""))
                else:
                    return self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {url.path}"})
        except TrajgraphError as exc:
            status = HTTPStatus.NOT_FOUND if isinstance(exc, KeyError) else HTTPStatus.BAD_REQUEST
            return self._json(status, {"error": str(exc)})
        except sqlite3.Error as exc:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"store not readable right now: {exc}"})
        self._json(HTTPStatus.OK, data)

    def _host_ok(self) -> bool:
        """Refuse requests for other host names when serving on loopback (DNS rebinding)."""
        if self.server.bound_host not in _LOOPBACK:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in _LOOPBACK

    def _json(self, status: HTTPStatus, data: Any) -> None:
        try:
            text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
        except ValueError:  # NaN/inf somewhere: JSON.parse would reject the page's data
            text = json.dumps(_finite(data), ensure_ascii=False, default=str)
        body = text.encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in _HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class ViewServer(ThreadingHTTPServer):
    """The viewer's HTTP server; `url` is where it listens."""

    daemon_threads = True

    def __init__(self, db: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.reader = _Reader(db)
        self.bound_host = host
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def server_close(self) -> None:
        super().server_close()
        self.reader.close()


def serve(db: str | Path, host: str = "127.0.0.1", port: int = 0, *, open_browser: bool = False) -> None:
    """Serve the viewer until interrupted."""
    try:
        server = ViewServer(db, host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or --host") from None
    print(f"trajgraph view: {server.url}  (store {db}, read-only; Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["ViewServer", "serve", "api_runs", "api_run"]
