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
import re
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

from trajgraph.errors import ConfigError, TrajgraphError
from trajgraph.export.chat import chat_message, readable_update
from trajgraph.export.read import RunFilter, count_runs, select_runs
from trajgraph.render import render_action, render_observation, render_task, steps_to_turns
from trajgraph.store import Store
from trajgraph.store.json import finite_or_null, to_jsonable
from trajgraph.store.rows import resolve_prompts
from trajgraph.store.text import utf8_data
from trajgraph.trajectory import ModelCall, PreferencePair, Run, SearchNode, Step

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
_HOST = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?|([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?")  # host[:port], IPv6 in []


class _Reader:
    """Read-only connections, one per request in flight, each request in its own read transaction.

    Requests never wait for each other: a slow page (a 20k-step run) does not
    hold up the run list. Idle connections are kept for reuse, up to `keep`.
    """

    def __init__(self, path: str | Path, keep: int = 8) -> None:
        self.path = Path(path)
        self.keep = keep
        self._idle: list[tuple[Store, bool]] = [self._open()]  # opened now: a bad file fails at start
        self._guard = threading.Lock()  # guards the idle list only, never held while reading

    def _open(self) -> tuple[Store, bool]:
        """A read-only store, and whether the file had no tables yet (then read as an empty store)."""
        store = Store(self.path, readonly=True).setup()
        tables = {r[0] for r in store.db.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "runs" in tables:
            return store, False
        store.close()  # a file nobody has written yet: show an empty store until it has tables
        return Store(":memory:").setup(), True

    @contextmanager
    def read(self) -> Iterator[Store]:
        with self._guard:
            item = self._idle.pop() if self._idle else None
        if item is None or item[1]:
            if item is not None:
                item[0].close()
            item = self._open()
        conn = item[0].db.conn
        conn.execute("BEGIN")
        try:
            yield item[0]
        finally:
            conn.execute("ROLLBACK")
            with self._guard:
                if len(self._idle) < self.keep:
                    self._idle.append(item)
                    item = None
            if item is not None:
                item[0].close()

    def close(self) -> None:
        with self._guard:
            idle, self._idle = self._idle, []
        for store, _ in idle:
            store.close()


# -- the JSON API --------------------------------------------------------------------------

_MAX_RUNS = 500  # runs in the list (the newest that match; filters apply first, in SQL)
_PAGE = 100  # steps per page
_MAX_PAGE = 1000
_MAX_LEVEL = 1000  # children of one tree node per request
_MAX_TURNS = 2000  # turns compared side by side
_MAX_ROWS = 500  # rollouts and pairs listed on a run's page
_PAGE_BYTES = 1_000_000  # a page of steps stops here (at least one step): 100 steps of 100 KB is not one page
_MAX_VALUE = 10_000  # characters of one string in a page; the rest with the step's "load all" (/api/step)
_PREVIEW = 500  # characters of a step's one-line text; the whole value is in its update, sent once
_MAX_INT = 2**63 - 1  # SQLite's integers (a larger offset is an OverflowError, not a page)


def _clip(value: Any, limit: int) -> tuple[Any, bool]:
    """`value` with every string past `limit` characters cut (and marked), and whether anything was cut."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value, False
        return value[:limit] + f"… ({len(value) - limit} more characters: load all)", True
    if isinstance(value, dict):
        items = [(k, _clip(v, limit)) for k, v in value.items()]
        return {k: v for k, (v, _) in items}, any(c for _, (_, c) in items)
    if isinstance(value, (list, tuple)):
        parts = [_clip(v, limit) for v in value]
        return [v for v, _ in parts], any(c for _, c in parts)
    return value, False


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
    """The newest `_MAX_RUNS` runs that match, and how many match in all (filters run in SQL, before the cap)."""
    filters = {k: v for k, v in query.items() if k in RunFilter.__dataclass_fields__ and v != ""}
    rf = RunFilter.of(**filters)
    rows = _summaries(db, select_runs(db, rf, limit=_MAX_RUNS))
    facets = {
        col: [r[col] for r in db.db.query(f"SELECT DISTINCT {col} FROM runs ORDER BY {col}")]
        for col in ("graph", "status", "kind")
    }
    facets["tag"] = [r["tag"] for r in db.db.query("SELECT DISTINCT tag FROM run_tags ORDER BY tag")]
    return {"runs": rows, "total": count_runs(db, rf), "facets": facets, "limit": _MAX_RUNS}


def api_run(db: Store, run_id: str) -> dict[str, Any]:
    """One run's header: summary, task, the first page of steps, the tree's top level, rollouts, pairs.

    Everything that grows with the run comes in pages: `api_steps` for more steps
    (model-call prompts through `api_call`), `api_tree` for the children of a node.
    """
    run = db.run(run_id)
    summary = _summaries(db, [run])[0]
    first = api_steps(db, run.id, 0, _PAGE)
    summary["outcome"] = run.outcome if run.outcome is not None else summary["outcome"]
    children = db.runs(parent_id=run.id, newest_first=False, limit=_MAX_ROWS)
    pair_rows = db.db.query("SELECT * FROM pairs WHERE run_id = ? ORDER BY id LIMIT ?", [run.id, _MAX_ROWS])
    pairs = []
    for row in pair_rows:
        row.pop("id", None)
        p = PreferencePair(**db._decode("pairs", row))
        pairs.append({
            "source": p.source, "prompt": to_jsonable(p.prompt), "chosen": _side_text(p.chosen), "rejected": _side_text(p.rejected),
            "chosen_score": p.chosen_score, "rejected_score": p.rejected_score,
            "node_id": p.node_id, "chosen_node": p.chosen_node, "rejected_node": p.rejected_node,
        })
    return {
        "run": {**summary, "input": to_jsonable(run.input), "output": to_jsonable(run.output),
                "metadata": to_jsonable(run.metadata), "thread_id": run.thread_id, "fork_step": run.fork_step},
        "task_text": render_task(run.input),
        "steps": first["steps"],
        "steps_total": first["total"],
        "orphan_calls": first["orphan_calls"],
        "page": _PAGE,
        "tree": api_tree(db, run.id, None)["nodes"],
        "children": _summaries(db, children),
        "children_total": _count(db, "SELECT COUNT(*) AS n FROM runs WHERE parent_id = ?", [run.id]),
        "pairs": pairs,
        "pairs_total": _count(db, "SELECT COUNT(*) AS n FROM pairs WHERE run_id = ?", [run.id]),
    }


def api_steps(db: Store, run_id: str, offset: int, limit: int, *, whole: bool = False) -> dict[str, Any]:
    """Steps from `offset` of a run, at most `limit` and about `_PAGE_BYTES`, with their model calls
    (prompts load on demand). Long strings are cut at `_MAX_VALUE` (the step says `truncated`;
    `api_step` sends it whole); each step's content is sent once, in `update` (`text` is a preview)."""
    run = db.run(run_id)
    limit = max(1, min(int(limit), _MAX_PAGE))
    offset = max(0, int(offset))
    rows = db.db.query('SELECT * FROM steps WHERE run_id = ? ORDER BY seq LIMIT ? OFFSET ?', [run.id, limit, offset])
    steps = [Step(**db._decode("steps", r)) for r in rows]
    by_step: dict[int | None, list[dict[str, Any]]] = {}
    if steps:
        calls = db.db.query("SELECT * FROM model_calls WHERE run_id = ? AND step_seq BETWEEN ? AND ? ORDER BY seq",
                            [run.id, steps[0].seq, steps[-1].seq])
        for call in (ModelCall(**db._decode("model_calls", r)) for r in calls):
            by_step.setdefault(call.step_seq, []).append(_call_summary(call))
    orphans: list[dict[str, Any]] = []
    if offset == 0:  # calls attributed to no step, shown after the first page
        orphans = [_call_summary(ModelCall(**db._decode("model_calls", r))) for r in db.db.query(
            "SELECT * FROM model_calls WHERE run_id = ? AND step_seq IS NULL ORDER BY seq LIMIT ?", [run.id, _MAX_PAGE])]
    page: list[dict[str, Any]] = []
    size = 0
    for s in steps:
        text = render_action(s.action) if s.action is not None else render_observation(s.update)
        step = {
            "seq": s.seq, "node": s.node, "lg_step": s.lg_step, "namespace": s.namespace, "latency_ms": s.latency_ms,
            "started_at": s.started_at, "error": s.error, "reward": s.reward, "interrupted": s.interrupted,
            "decision": s.action is not None,
            "text": text if whole or len(text) <= _PREVIEW else text[:_PREVIEW] + "…",
            "update": readable_update(s.update),
            "model_calls": by_step.pop(s.seq, []),
        }
        truncated = False
        if not whole:
            for key in ("update", "model_calls", "error"):
                step[key], cut = _clip(step[key], _MAX_VALUE)
                truncated = truncated or cut
        step["truncated"] = truncated
        size += len(json.dumps(step, default=str))
        if page and size > _PAGE_BYTES:
            break
        page.append(step)
    return {
        "steps": page,
        "orphan_calls": orphans,
        "offset": offset,
        "total": _count(db, "SELECT COUNT(*) AS n FROM steps WHERE run_id = ?", [run.id]),
    }


def api_step(db: Store, run_id: str, seq: int) -> dict[str, Any]:
    """One step whole (what a page's "load all" asks for)."""
    run = db.run(run_id)
    rows = list(db.db.query("SELECT COUNT(*) AS n FROM steps WHERE run_id = ? AND seq < ?", [run.id, int(seq)]))
    found = api_steps(db, run.id, int(rows[0]["n"]), 1, whole=True)["steps"]
    if not found or found[0]["seq"] != int(seq):
        raise ConfigError(f"run {run.id} has no step {seq}")
    return found[0]


def _call_summary(call: ModelCall) -> dict[str, Any]:
    return {
        "seq": call.seq, "model": call.model, "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens, "latency_ms": call.latency_ms, "error": call.error,
        "response": None if call.response is None else chat_message(call.response),
    }


def api_call(db: Store, run_id: str, seq: int) -> dict[str, Any]:
    """One model call's whole prompt: its stored messages after the prefix shared with earlier calls."""
    run = db.run(run_id)
    chain = db.db.query(  # the call and the calls its prompt builds on (prompt_ref), oldest first
        "WITH RECURSIVE chain(seq) AS (SELECT ? UNION SELECT m.prompt_ref FROM model_calls m JOIN chain c "
        "ON m.run_id = ? AND m.seq = c.seq WHERE m.prompt_ref IS NOT NULL) "
        "SELECT * FROM model_calls WHERE run_id = ? AND seq IN (SELECT seq FROM chain) ORDER BY seq",
        [int(seq), run.id, run.id],
    )
    calls = resolve_prompts([ModelCall(**db._decode("model_calls", r)) for r in chain])
    call = next((c for c in calls if c.seq == int(seq)), None)
    if call is None:
        raise ConfigError(f"run {run.id} has no model call {seq}")
    return {"seq": call.seq, "messages": [chat_message(m) for m in call.messages or []]}


def api_tree(db: Store, run_id: str, parent: int | None) -> dict[str, Any]:
    """The children of one search-tree node (the roots when `parent` is None), each with its child count."""
    run = db.run(run_id)
    where = "n.parent_id IS NULL" if parent is None else "n.parent_id = ?"
    params: list[Any] = [run.id] + ([] if parent is None else [int(parent)])
    rows = list(db.db.query(f"SELECT * FROM search_nodes n WHERE n.run_id = ? AND {where} ORDER BY n.id LIMIT ?", [*params, _MAX_LEVEL]))
    ids = [r["id"] for r in rows]
    counts: dict[int, int] = {}
    if ids:  # one grouped count over the run's nodes (a correlated count per node scanned them once per node)
        marks = ",".join("?" * len(ids))
        counts = {r["parent_id"]: r["n"] for r in db.db.query(
            f"SELECT parent_id, COUNT(*) AS n FROM search_nodes WHERE run_id = ? AND parent_id IN ({marks}) GROUP BY parent_id",
            [run.id, *ids])}
    nodes = []
    for row in rows:
        node = SearchNode(**db._decode("search_nodes", row)).to_dict()
        node["action"] = to_jsonable(node["action"])
        node["n_children"] = counts.get(row["id"], 0)
        nodes.append(node)
    total = _count(db, f"SELECT COUNT(*) AS n FROM search_nodes n WHERE n.run_id = ? AND {where}", params)
    return {"nodes": nodes, "total": total, "parent": parent}


def api_turns(db: Store, run_id: str) -> dict[str, Any]:
    """(action, observation) turns for side-by-side comparison, from the first steps of a long run."""
    run = db.run(run_id)
    rows = db.db.query("SELECT * FROM steps WHERE run_id = ? ORDER BY seq LIMIT ?", [run.id, _MAX_TURNS * 4])
    turns = steps_to_turns([Step(**db._decode("steps", r)) for r in rows])[:_MAX_TURNS]
    return {"run": _summaries(db, [run])[0], "turns": [{"action": a, "observation": o} for a, o in turns]}


def _count(db: Store, sql: str, params: list[Any]) -> int:
    return int(next(iter(db.db.query(sql, params)))["n"])


def _int(query: dict[str, str], name: str, default: Any) -> Any:
    text = query.get(name, "")
    if text == "":
        return default
    try:
        number = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} must be a whole number") from None
    if not -_MAX_INT <= number <= _MAX_INT:
        raise ConfigError(f"{name}={text[:30]!r} is out of range")
    return number


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
                run_id = query.get("id", "")
                if url.path == "/api/runs":
                    data = api_runs(db, query)
                elif url.path == "/api/run":
                    data = api_run(db, run_id)
                elif url.path == "/api/steps":
                    data = api_steps(db, run_id, _int(query, "offset", 0), _int(query, "limit", _PAGE))
                elif url.path == "/api/tree":
                    data = api_tree(db, run_id, _int(query, "parent", None) if query.get("parent", "") != "" else None)
                elif url.path == "/api/call":
                    data = api_call(db, run_id, _int(query, "seq", 0))
                elif url.path == "/api/turns":
                    data = api_turns(db, run_id)
                elif url.path == "/api/step":
                    data = api_step(db, run_id, _int(query, "seq", 0))
                else:
                    return self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {url.path}"})
        except TrajgraphError as exc:
            status = HTTPStatus.NOT_FOUND if isinstance(exc, KeyError) else HTTPStatus.BAD_REQUEST
            return self._json(status, {"error": str(exc)})
        except sqlite3.Error as exc:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"store not readable right now: {exc}"})
        except Exception as exc:  # never a dropped connection: the page says what went wrong
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"unexpected {type(exc).__name__}: {exc}"[:500]})
        self._json(HTTPStatus.OK, data)

    def _host_ok(self) -> bool:
        """Refuse requests for other host names when serving on loopback (DNS rebinding).

        The Host header is parsed as host[:port] (RFC 9110), nothing else: `localhost:80@evil.com`
        is not a host, and the port, when given, must be ours."""
        if self.server.bound_host not in _LOOPBACK:
            return True
        found = _HOST.fullmatch((self.headers.get("Host") or "").strip())
        if found is None:
            return False
        host, port = (found.group(1) or found.group(3)).lower(), found.group(2) or found.group(4)
        return host in _LOOPBACK and (port is None or int(port) == self.server.server_address[1])

    def _json(self, status: HTTPStatus, data: Any) -> None:
        data = utf8_data(data)  # a lone surrogate as its \\udcxx escape (trajgraph.store.text)
        try:
            text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
        except ValueError:  # NaN/inf somewhere: JSON.parse would reject the page's data
            text = json.dumps(finite_or_null(data), ensure_ascii=False, default=str)
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


__all__ = ["ViewServer", "serve", "api_runs", "api_run", "api_steps", "api_step", "api_tree", "api_call", "api_turns"]
