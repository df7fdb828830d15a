"""`trajgraph view`: the JSON API, and the page end to end in headless Chromium.

Chromium is driven over the DevTools protocol (a websocket, python `websockets`),
so no browser is downloaded. Debian: `apt-get install -y chromium`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from tests._export_store import SEARCH_TASK, Facts, build_store
from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent
from trajgraph.trajectory import Run, SearchNode, Step, new_id
from trajgraph.view.server import ViewServer

PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    facts = build_store(tmp_path_factory.mktemp("view") / "runs.db")
    # trajectory content that tries to be markup: it must show as text, never run
    model = ScriptedToolModel(script=[[fake_tool_call("add", a=1, b=1)], PAYLOAD])
    with tg.Store(facts.path) as store:  # closing flushes the recording
        agent = tg.record(react_calculator_agent(model), store=store, tags=[PAYLOAD])
        agent.invoke({"messages": [("user", PAYLOAD)]})
    return facts


@pytest.fixture(scope="module")
def server(facts: Facts) -> Iterator[ViewServer]:
    srv = ViewServer(facts.path)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def get(server: ViewServer, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(server.url.rstrip("/") + path)
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def api(server: ViewServer, path: str) -> Any:
    status, _, body = get(server, path)
    assert status == 200, body
    return json.loads(body)


# -- the JSON API --------------------------------------------------------------------------


def test_api_lists_runs_with_filters(server: ViewServer, facts: Facts) -> None:
    data = api(server, "/api/runs")
    store = tg.Store(facts.path, readonly=True)
    assert sorted(r["id"] for r in data["runs"]) == sorted(r.id for r in store.runs())
    store.close()
    assert set(data["facets"]["kind"]) == {"record", "search", "rollout"} and PAYLOAD in data["facets"]["tag"]
    failed = api(server, "/api/runs?status=failed")["runs"]
    assert [r["id"] for r in failed] == facts.calc_failed
    rollouts = api(server, f"/api/runs?kind=rollout&min_outcome=1&task={SEARCH_TASK}")["runs"]
    assert [r["id"] for r in rollouts] == [k for k, v in facts.rollout_rewards.items() if v == 1.0]
    env = {r["id"]: r for r in api(server, "/api/runs?graph=deceptive_chain&kind=record")["runs"]}
    assert {k: v["outcome"] for k, v in env.items()} == facts.env_rewards  # final env reward, from the steps
    status, _, body = get(server, "/api/runs?since=someday")
    assert status == 400 and "since='someday' is not a time" in json.loads(body)["error"]


def test_api_run_detail(server: ViewServer, facts: Facts) -> None:
    calc = api(server, f"/api/run?id={facts.calc_ok[0]}")
    assert [s["node"] for s in calc["steps"]] == ["agent", "tools", "agent", "tools", "agent"]
    assert [len(s["model_calls"]) for s in calc["steps"]] == [1, 0, 1, 0, 1]
    assert calc["steps"][0]["model_calls"][0]["response"]["tool_calls"][0]["function"]["name"] == "add"
    call = api(server, f"/api/call?id={facts.calc_ok[0]}&seq=1")  # the whole prompt, on demand
    assert [m["role"] for m in call["messages"]][:1] == ["user"] and len(call["messages"]) >= 3  # user, the tool call, its result
    search = api(server, f"/api/run?id={facts.search_id[:12]}")  # an id prefix works, like the CLI
    assert search["run"]["id"] == facts.search_id and search["run"]["n_nodes"] == len(facts.node_values) + 1
    (root,) = search["tree"]  # the top level only; each level loads on demand
    assert root["parent_id"] is None and root["n_children"] == len(api(server, f"/api/tree?id={facts.search_id}&parent={root['id']}")["nodes"])
    assert len(search["pairs"]) == facts.pairs and len(search["children"]) == len(facts.rollout_rewards)
    status, _, body = get(server, "/api/run?id=nope")
    assert status == 404 and "no run 'nope'" in json.loads(body)["error"]


def test_server_headers_static_files_and_host_check(server: ViewServer) -> None:
    status, headers, body = get(server, "/")
    assert status == 200 and b'<script src="/app.js"' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    assert get(server, "/app.js")[0] == 200 and get(server, "/app.css")[1]["Content-Type"].startswith("text/css")
    assert get(server, "/../store.py")[0] == 404
    assert get(server, "/api/runs", host="evil.example:80")[0] == 403  # DNS rebinding
    assert get(server, "/api/runs", host=f"localhost:{server.server_address[1]}")[0] == 200
    assert server.server_address[0] == "127.0.0.1"


def test_read_only_and_consistent_while_written(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    tg.Store(path).setup().close()
    srv = ViewServer(path)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    stop, written = threading.Event(), [0]

    def writer() -> None:
        store = tg.Store(path)
        while not stop.is_set():
            run = Run(id=new_id(), graph="g", status="succeeded", ended_at=time.time())
            store.write(runs=[run], steps=[Step(run_id=run.id, seq=i, node="n") for i in range(3)])
            written[0] += 1
            time.sleep(0.002)
        store.close()

    w = threading.Thread(target=writer)
    w.start()
    try:
        seen = 0
        for _ in range(30):
            runs = api(srv, "/api/runs")["runs"]
            assert all(r["n_steps"] == 3 for r in runs)  # never a run with part of its batch
            seen = max(seen, len(runs))
        assert seen > 0
        with srv.reader.read() as db, pytest.raises(Exception, match="readonly"):
            db.db.conn.execute("DELETE FROM runs")
    finally:
        stop.set()
        w.join()
        srv.shutdown()
        srv.server_close()


# -- the page in headless Chromium ----------------------------------------------------------


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "headless Chromium is needed for the viewer test and was not found on PATH; "
        "install it with `apt-get update && apt-get install -y chromium` (Debian/Ubuntu)"
    )


class Browser:
    """One headless Chromium page, driven over the DevTools protocol."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        self.proc = subprocess.Popen(
            [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"chromium did not start (exit code {self.proc.poll()})")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as res:
            page = next(t for t in json.load(res) if t["type"] == "page")
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
        self.n = 0
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise AssertionError(f"JS error in {expression!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait(self, expression: str, timeout: float = 15) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}")

    def close(self) -> None:
        self.stack.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_page_opens_a_run_and_expands_the_search_tree(server: ViewServer, browser: Browser, facts: Facts, tmp_path: Path) -> None:
    total = len(api(server, "/api/runs")["runs"])
    browser.call("Page.navigate", url=server.url)
    browser.wait(f"document.querySelectorAll('#runs tbody tr.run-row').length === {total}")

    # open the search run by clicking its row
    browser.js(f"document.querySelector('#runs tr.run-row[data-run-id=\"{facts.search_id}\"]').click()")
    browser.wait("document.querySelector('#tree') !== null")
    assert browser.js("location.hash") == f"#run={facts.search_id}"
    assert browser.js("document.querySelector('.run-header h2').textContent").startswith("deceptive_chain")
    assert browser.js("document.querySelector('.task').textContent").startswith(SEARCH_TASK)
    browser.wait("document.querySelectorAll('#tree li.tree-node').length > 1")
    first_level = api(server, f"/api/run?id={facts.search_id}")["tree"][0]["n_children"]
    assert browser.js("document.querySelectorAll('#tree li.tree-node').length") == 1 + first_level  # loaded on demand
    assert browser.js("document.querySelectorAll('table.pairs tbody tr').length") == facts.pairs

    # the root is open, the chosen first move is collapsed; clicking its toggle opens it
    first = facts.best_path[0]
    sel = "#tree li[data-root='1'] > ul.children > li.chosen"
    assert browser.js(f"document.querySelector(\"{sel} > .node-row .action\").textContent") == first
    assert browser.js(f"document.querySelector(\"{sel} > ul.children\").hidden") is True
    browser.js(f"document.querySelector(\"{sel} > .node-row > .toggle\").click()")
    browser.wait(f"document.querySelector(\"{sel} > ul.children\").hidden === false")
    assert browser.js(f"document.querySelector(\"{sel} > .node-row > .toggle\").getAttribute('aria-expanded')") == "true"
    grandkids = browser.js(f"[...document.querySelectorAll(\"{sel} > ul.children > li\")].map(li => li.querySelector('.action').textContent)")
    assert sorted(grandkids) == ["jump", "left", "right", "up"]
    assert browser.js(f"[...document.querySelectorAll(\"{sel} > ul.children > li.chosen .action\")][0].textContent") == facts.best_path[1]
    chosen_bg = browser.js(f"getComputedStyle(document.querySelector(\"{sel} > .node-row\")).backgroundColor")
    plain_bg = browser.js("getComputedStyle(document.querySelector(\"#tree li[data-root='1'] > ul.children > li:not(.chosen) > .node-row\")).backgroundColor")
    assert chosen_bg != plain_bg  # the chosen path is highlighted
    badges = browser.js(f"[...document.querySelectorAll(\"{sel} > .node-row .badge\")].map(b => b.textContent)")
    assert "value 1" in badges and "chosen" in badges and any(b.startswith("visits ") for b in badges)

    # "Expand all" loads every level; "Chosen path" shows the chosen line only
    browser.js("[...document.querySelectorAll('.toolbar button')].find(b => b.textContent === 'Expand all').click()")
    browser.wait(f"document.querySelectorAll('#tree li.tree-node').length === {len(facts.node_values) + 1}")
    # a node without an observation or a reason shows nothing there, not the text "null" (Element.append(null))
    nulls = "[...document.querySelectorAll('#tree li.tree-node')].filter(li => [...li.childNodes].some(c => c.nodeType === 3 && c.textContent === 'null')).length"
    assert browser.js("[...document.querySelectorAll('#tree li.tree-node')].filter(li => !li.querySelector(':scope > .reason')).length") > 0
    assert browser.js(nulls) == 0
    assert "null" not in browser.js("document.querySelector('#tree').innerText")
    assert browser.js("[...document.querySelectorAll('#tree ul.children')].filter(u => u.children.length && u.hidden).length") == 0
    browser.js("[...document.querySelectorAll('.toolbar button')].find(b => b.textContent === 'Chosen path').click()")
    visible = "[...document.querySelectorAll('#tree li.tree-node')].filter(li => li.offsetParent !== null)"
    browser.wait(f"{visible}.length === {1 + first_level + 4 * (len(facts.best_path) - 1)}")  # the path and its siblings
    shown_chosen = browser.js(f"{visible}.filter(li => li.classList.contains('chosen') && li.dataset.root !== '1').map(li => li.querySelector('.action').textContent)")
    assert shown_chosen == list(facts.best_path)

    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert png_size(shot) == (1400, 1000) and len(shot) > 20_000
    (tmp_path / "view.png").write_bytes(shot)
    keep = os.environ.get("TRAJGRAPH_VIEW_SCREENSHOT")  # set it to look at the page yourself
    if keep:
        Path(keep).write_bytes(shot)


def test_page_shows_what_a_search_says_of_itself(server: ViewServer, browser: Browser, facts: Facts) -> None:
    run_id = facts.real_searches["rro"]
    meta = tg.Store(facts.path, readonly=True).run(run_id).metadata
    browser.call("Page.navigate", url=f"{server.url}#run={run_id}")
    browser.wait("document.querySelector('.run-header .search-stats') !== null")
    shown = browser.js("document.querySelector('.run-header .search-stats').textContent")
    stats = meta["stats"]
    assert stats["merged_states"] > 0  # the chain's branches meet: the count shown is a real one
    assert shown == (f"{meta['nodes']} nodes · {stats['merged_states']} merged states (transpositions) · "
                     f"{stats['reused_expansions']} reused expansions · values: {stats['value_source']} · "
                     f"{meta['spent']['policy_calls']} policy calls")
    browser.call("Page.navigate", url=f"{server.url}#run={facts.calc_ok[0]}")  # a recorded run has no such line
    browser.wait(f"(document.querySelector('.run-header .mono') || {{}}).textContent === '{facts.calc_ok[0]}'")
    assert browser.js("document.querySelector('.run-header .search-stats') === null") is True


def test_page_shows_steps_with_model_calls(server: ViewServer, browser: Browser, facts: Facts) -> None:
    browser.call("Page.navigate", url=server.url + f"#run={facts.calc_ok[0]}")
    browser.wait("document.querySelectorAll('#steps .step').length === 5")
    assert browser.js("document.querySelectorAll('#steps .step.decision').length") == 3
    assert browser.js("document.querySelector('.task').textContent") == "What is (2+3)*4?"
    assert "null" not in browser.js("document.querySelector('#detail').textContent")
    assert browser.js("document.querySelectorAll('#steps details.model-call').length") == 3
    browser.js("document.querySelector('#steps details.model-call').open = true")
    assert browser.js("document.querySelector('#steps details.model-call .response .tool-call').textContent") == 'add({"a":2,"b":3})'


def set_filter(browser: Browser, name: str, value: str) -> None:
    browser.js(f"{{ const s = document.querySelector('#filters [name={name}]'); s.value = {json.dumps(value)};"
               " s.dispatchEvent(new Event('change', {bubbles: true})); }")


def test_page_filters_and_compares_two_runs(server: ViewServer, browser: Browser, facts: Facts) -> None:
    browser.call("Page.navigate", url=server.url)
    browser.wait("document.querySelectorAll('#runs tbody tr.run-row').length > 0")
    set_filter(browser, "status", "failed")
    browser.wait("document.querySelectorAll('#runs tbody tr.run-row').length === 1")
    assert browser.js("document.querySelector('#runs tbody tr.run-row').dataset.runId") == facts.calc_failed[0]

    a, b = sorted(facts.env_rewards, key=facts.env_rewards.__getitem__)[0], max(facts.env_rewards, key=facts.env_rewards.__getitem__)
    set_filter(browser, "status", "")
    browser.wait(f"document.querySelector('#runs tr.run-row[data-run-id=\"{a}\"]') !== null")
    for rid in (a, b):
        browser.js(f"document.querySelector('#runs tr.run-row[data-run-id=\"{rid}\"] input.pick').click()")
    assert browser.js("document.querySelector('#compare').disabled") is False
    browser.js("document.querySelector('#compare').click()")
    browser.wait("document.querySelector('#compare-turns') !== null")
    turns = lambda rid: api(server, f"/api/turns?id={rid}")["turns"]  # noqa: E731
    assert browser.js("document.querySelectorAll('#compare-turns tbody tr').length") == max(len(turns(a)), len(turns(b)))
    assert browser.js("document.querySelectorAll('.compare .run-header').length") == 2


def test_trajectory_text_cannot_inject_markup(server: ViewServer, browser: Browser, facts: Facts) -> None:
    (run,) = api(server, "/api/runs?tag=" + urllib.parse.quote(PAYLOAD))["runs"]
    browser.call("Page.navigate", url=server.url + f"#run={run['id']}")
    browser.wait("document.querySelectorAll('#steps .step').length > 0")
    browser.js("document.querySelectorAll('details').forEach(d => d.open = true)")
    time.sleep(0.2)  # an injected onerror handler would have fired by now
    assert browser.js("window.__pwned === undefined") is True
    assert browser.js("document.querySelectorAll('#detail img, #detail script, #sidebar img').length") == 0
    assert PAYLOAD in browser.js("document.querySelector('.task').textContent")
    assert PAYLOAD in browser.js("document.querySelector('#detail').textContent")  # the answer, shown as text
    assert PAYLOAD in browser.js("[...document.querySelectorAll('#filters [name=tag] option')].map(o => o.textContent).join('|')")


def test_cli_view_binds_loopback(facts: Facts) -> None:
    from typer.testing import CliRunner

    from trajgraph.cli import app

    res = CliRunner().invoke(app, ["view", "--db", str(facts.path.parent / "missing.db")])
    assert res.exit_code == 2 and res.output.strip() == f"error: {facts.path.parent / 'missing.db'}: no such store file; record a run first or pass --db"
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "trajgraph.cli", "view", "--db", str(facts.path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = proc.stdout.readline()  # "trajgraph view: http://127.0.0.1:PORT/  (store ..., read-only; ...)"
        assert line.startswith("trajgraph view: http://127.0.0.1:"), line + proc.stderr.read() if proc.poll() is not None else line
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/runs", timeout=10) as res:
            assert len(json.load(res)["runs"]) > 0
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_store_first_written_after_the_server_started(tmp_path: Path) -> None:
    path = tmp_path / "late.db"
    path.write_bytes(b"")  # e.g. `trajgraph view` opened before the first recorded run
    srv = ViewServer(path)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        assert api(srv, "/api/runs")["runs"] == []
        store = tg.Store(path)
        store.add_run(Run(id=new_id(), graph="late", status="succeeded"))
        store.close()
        assert [r["graph"] for r in api(srv, "/api/runs")["runs"]] == ["late"]
    finally:
        srv.shutdown()
        srv.server_close()


# -- scale: filters before the cap, pages, levels on demand, no global lock ------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewServer]:
    """520 runs (the 12 oldest succeed, two of them only by their final env step) and one run with
    20k steps and a 30k-node search tree."""
    path = tmp_path_factory.mktemp("big") / "big.db"
    with tg.Store(path) as store:
        runs = [Run(id=f"r{i:04d}", graph="g", status="succeeded", started_at=1000.0 + i,
                    outcome=None if i in (3, 7) else (1.0 if i < 12 else 0.0)) for i in range(520)]
        steps = [Step(run_id=f"r{i:04d}", seq=0, node="env", update={"done": True, "reward": 1.0}) for i in (3, 7)]
        store.write(runs=runs, steps=steps)
        store.write(runs=[Run(id="huge", graph="g", kind="search", status="succeeded", started_at=0.0)])
        store.write(steps=[Step(run_id="huge", seq=i, node="policy" if i % 2 == 0 else "env",
                                action={"action": f"move {i}"} if i % 2 == 0 else None, update={"observation": f"room {i}"})
                           for i in range(20_000)])
        # a root, 30 children, then 29,969 nodes spread under them: a level is at most a few thousand
        nodes = [SearchNode(run_id="huge", id=0, visits=1)]
        nodes += [SearchNode(run_id="huge", id=i, parent_id=0, depth=1, action_text=f"a{i}", chosen=i == 1) for i in range(1, 31)]
        nodes += [SearchNode(run_id="huge", id=i, parent_id=1 + i % 30, depth=2, action_text=f"b{i}") for i in range(31, 30_000)]
        store.write(search_nodes=nodes)
    srv = ViewServer(path)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_filters_apply_before_the_run_cap(big: ViewServer) -> None:
    everything = api(big, "/api/runs")
    assert len(everything["runs"]) == everything["limit"] == 500 and everything["total"] == 521
    winners = api(big, "/api/runs?min_outcome=1")  # all 12 are older than the newest 500
    assert sorted(r["id"] for r in winners["runs"]) == [f"r{i:04d}" for i in range(12)] and winners["total"] == 12
    assert {r["id"]: r["outcome"] for r in winners["runs"]}["r0003"] == 1.0  # from the final env step
    losers = api(big, "/api/runs?max_outcome=0.5&graph=g")
    assert losers["total"] == 508 and len(losers["runs"]) == 500 and "r0519" in {r["id"] for r in losers["runs"]}


def test_a_huge_run_comes_in_pages(big: ViewServer) -> None:
    status, _, body = get(big, "/api/run?id=huge")
    assert status == 200 and len(body) < 200_000  # the whole run would be tens of MB
    head = json.loads(body)
    assert head["steps_total"] == 20_000 and [s["seq"] for s in head["steps"]] == list(range(head["page"]))
    assert head["run"]["n_nodes"] == 30_000 and [n["id"] for n in head["tree"]] == [0] and head["tree"][0]["n_children"] == 30
    page = api(big, "/api/steps?id=huge&offset=19950&limit=100")
    assert [s["seq"] for s in page["steps"]] == list(range(19_950, 20_000)) and page["steps"][0]["text"] == "move 19950"
    level = api(big, "/api/tree?id=huge&parent=0")
    assert [n["id"] for n in level["nodes"]] == list(range(1, 31)) and level["nodes"][0]["n_children"] == 998
    deep = api(big, "/api/tree?id=huge&parent=1")
    assert deep["total"] == 998 and len(deep["nodes"]) == 998 and all(n["parent_id"] == 1 for n in deep["nodes"])
    status, _, body = get(big, "/api/steps?id=huge&offset=x")
    assert status == 400 and "offset='x'" in json.loads(body)["error"]


def test_requests_do_not_wait_for_each_other(big: ViewServer) -> None:
    """A request still reading (held open here) does not block another one: no lock around the store."""
    entered, release = threading.Event(), threading.Event()

    def slow_reader() -> None:
        with big.reader.read() as db:
            db.run("huge")
            entered.set()
            release.wait(30)

    held = threading.Thread(target=slow_reader)
    held.start()
    try:
        assert entered.wait(10)
        results: list[int] = []
        fast = threading.Thread(target=lambda: results.append(get(big, "/api/steps?id=huge&limit=5")[0]))
        fast.start()
        fast.join(10)
        assert results == [200]  # answered while the other read is still open
    finally:
        release.set()
        held.join(10)


def test_page_loads_more_steps_and_opens_levels(big: ViewServer, browser: Browser) -> None:
    browser.call("Page.navigate", url=big.url)
    browser.wait("document.querySelector('#runs-note')?.textContent === 'newest 500 of 521 matching runs'")
    browser.js("{ const f = document.querySelector('#filters [name=min_outcome]'); f.value = '1';"
               " f.dispatchEvent(new Event('change', {bubbles: true})); }")
    browser.wait("document.querySelectorAll('#runs tbody tr.run-row').length === 12")
    browser.call("Page.navigate", url=big.url + "#run=huge")
    browser.wait("document.querySelectorAll('#steps .step').length === 100")
    browser.js("document.querySelector('#more-steps').click()")
    browser.wait("document.querySelectorAll('#steps .step').length === 200")
    assert browser.js("document.querySelectorAll('#steps .step')[199].dataset.seq") == "199"
    browser.wait("document.querySelectorAll('#tree li.tree-node').length === 31")  # the root opens its 30 children
    browser.js("document.querySelector(\"#tree li[data-node-id='1'] > .node-row > .toggle\").click()")
    browser.wait("document.querySelectorAll('#tree li.tree-node').length === 31 + 998")


# -- issue 21 item 7: small pages, whole values on demand, strict input ------------------------------


@pytest.fixture(scope="module")
def heavy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ViewServer, str]]:
    """A run of 100 steps of 100 KB each: 10 MB of values."""
    path = tmp_path_factory.mktemp("big") / "big.db"
    with tg.Store(path) as store:
        run = Run(id=new_id(), graph="big", status="succeeded")
        store.add_run(run)
        store.write(steps=[Step(run_id=run.id, seq=i, node="n", update={"observation": f"{i:03d}" + "x" * 100_000}) for i in range(100)])
    srv = ViewServer(path)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, run.id
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_steps_pages_are_bounded_by_bytes_and_send_each_value_once(heavy: tuple[ViewServer, str]) -> None:
    server, run_id = heavy
    seen, offset, pages = [], 0, 0
    while True:
        status, _, body = get(server, f"/api/steps?id={run_id}&offset={offset}&limit=1000")
        assert status == 200 and len(body) < 1_200_000  # ~1 MB a page, not 10 MB
        page = json.loads(body)
        if not page["steps"]:
            break
        for step in page["steps"]:
            assert step["truncated"] and len(step["update"]["observation"]) < 11_000
            assert body.count(f'"{step["seq"]:03d}xxxx'.encode()) <= 2  # the preview and the cut value, never two whole copies
        seen += [s["seq"] for s in page["steps"]]
        offset += len(page["steps"])
        pages += 1
    assert seen == list(range(100)) and pages < 100
    whole = api(server, f"/api/step?id={run_id}&seq=42")
    assert whole["seq"] == 42 and whole["update"]["observation"] == "042" + "x" * 100_000 and not whole["truncated"]
    assert len(api(server, f"/api/run?id={run_id}")["steps"]) < 100


def test_huge_numbers_are_400_not_a_dropped_connection(heavy: tuple[ViewServer, str]) -> None:
    server, run_id = heavy
    for path in (f"/api/steps?id={run_id}&offset=99999999999999999999999", f"/api/tree?id={run_id}&parent=99999999999999999999999",
                 f"/api/call?id={run_id}&seq=-99999999999999999999999", f"/api/step?id={run_id}&seq=99999999999999999999999"):
        status, _, body = get(server, path)
        assert status == 400 and "out of range" in json.loads(body)["error"], path


def test_host_header_is_parsed_as_host_and_port(heavy: tuple[ViewServer, str]) -> None:
    server, _ = heavy
    port = server.server_address[1]
    for host in ("localhost:80@evil.com", f"localhost:{port}@evil.com", "evil.com#@localhost", f"localhost:{port}/x",
                 "localhost:99999999", f"127.0.0.1:{port + 1}", "localhost.evil.com", "[::1]x"):
        assert get(server, "/api/runs", host=host)[0] == 403, host
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}"):
        assert get(server, "/api/runs", host=host)[0] == 200, host


def test_load_all_in_the_page(heavy: tuple[ViewServer, str], browser: Browser) -> None:
    server, run_id = heavy
    browser.call("Page.navigate", url=server.url + f"#run={run_id}")
    browser.wait("document.querySelectorAll('#steps .step').length > 0")
    assert browser.js("document.querySelectorAll('#steps .step').length") < 100
    browser.js("document.querySelector('#steps .step[data-seq=\"0\"] button.load-all').click()")
    browser.wait("document.querySelector('#steps .step[data-seq=\"0\"] button.load-all') === null")
    assert browser.js("document.querySelector('#steps .step[data-seq=\"0\"] pre').textContent.length") > 100_000
