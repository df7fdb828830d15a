"""langgraph.json served the way users run it: `langgraph dev`, then the server's HTTP API.

One server (`langgraph dev --no-browser --no-reload`, a free loopback port, the
in-memory runtime of `langgraph-cli[inmem]`) is started in a temporary copy of the
project's langgraph.json and graphs/, with the trajgraph store in the temporary
folder ($TRAJGRAPH_DB). Nothing reaches the network: the CLI's analytics, the
server's version check and LangSmith tracing are turned off by their variables,
and the server's own event-loop guard (blockbuster) stays on, so a graph that
blocks the loop fails its run here as it would in Studio.

Every graph listed in langgraph.json runs through `/runs/wait` and `/runs/stream`;
the answers are checked, the recorded and optimized runs are read back from the
store (the search with its tree and its best trajectory), a malformed input gets
the one-line InputError, and the server is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

import trajgraph as tg

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How many employees are there?"
ASK = {"messages": [{"role": "user", "content": QUESTION}]}
INPUTS: dict[str, dict[str, Any]] = {
    "frozenlake": {"pos": 0},
    "cliffwalking": {"pos": 36},
    "textworld": {},
    "sql_react": ASK,
    "recorded": ASK,
    "optimized": ASK,
}
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # trajgraph's offline defaults, as its CLI sets them
    "HF_HUB_OFFLINE": "1",
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",  # the CLI posts usage data otherwise
    "LANGGRAPH_NO_VERSION_CHECK": "true",  # the server asks PyPI for a newer langgraph-api otherwise
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, folder: Path, log: Path) -> None:
        self.url, self.folder, self.log = url, folder, log
        self.http = httpx.Client(base_url=url, timeout=120)

    def wait(self, graph: str, input: Any) -> Any:
        reply = self.http.post("/runs/wait", json={"assistant_id": graph, "input": input})
        assert reply.status_code == 200, (graph, reply.status_code, reply.text[:500], self.tail())
        return reply.json()

    def stream(self, graph: str, input: Any, mode: str = "values") -> list[tuple[str, Any]]:
        """The server-sent events of a streamed run, as (event, data) pairs."""
        events: list[tuple[str, Any]] = []
        event = None
        body = {"assistant_id": graph, "input": input, "stream_mode": [mode]}
        with self.http.stream("POST", "/runs/stream", json=body) as reply:
            assert reply.status_code == 200, (graph, reply.status_code, self.tail())
            for line in reply.iter_lines():
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:") and event is not None:
                    events.append((event, json.loads(line.partition(":")[2])))
        return events

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("deploy")
    shutil.copy(ROOT / "langgraph.json", folder / "langgraph.json")
    shutil.copytree(ROOT / "graphs", folder / "graphs", ignore=shutil.ignore_patterns("__pycache__"))
    cli = Path(sys.executable).with_name("langgraph")
    assert cli.exists(), "langgraph-cli is missing: pip install -e '.[dev]' (the dev extra has langgraph-cli[inmem])"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env.update(OFFLINE_ENV, TRAJGRAPH_DB=str(folder / "runs.db"), TRAJGRAPH_TEXTWORLD_CACHE=str(folder / "textworld"))
    log = folder / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(cli), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port), "--n-jobs-per-worker", "4"],
            cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    running = Server(f"http://127.0.0.1:{port}", folder, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"langgraph dev exited with {proc.returncode}:\n{running.tail()}"
            try:
                if running.http.get("/ok", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"langgraph dev did not answer /ok in 90 s:\n{running.tail()}"
            time.sleep(0.25)
        yield running
    finally:
        running.http.close()
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and anything it started
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


def _last_message(state: dict[str, Any]) -> dict[str, Any]:
    return state["messages"][-1]


def _store(server: Server) -> tg.Store:
    return tg.Store(server.folder / "runs.db", readonly=True)


def test_langgraph_json_lists_the_graphs_this_test_runs() -> None:
    assert set(json.loads((ROOT / "langgraph.json").read_text())["graphs"]) == set(INPUTS)


def test_each_graph_documents_the_input_this_test_sends(server: Server) -> None:
    """langgraph.json's descriptions (shown by the API and Studio) end with the example input."""
    assistants = server.http.post("/assistants/search", json={"limit": 50}).json()
    documented = {a["graph_id"]: a["description"] for a in assistants}
    assert set(documented) == set(INPUTS)
    for name, description in documented.items():
        assert json.loads(description.rpartition("Input: ")[2]) == INPUTS[name], name


def test_every_graph_answers_through_runs_wait(server: Server) -> None:
    with ThreadPoolExecutor(4) as pool:  # the server runs 4 at a time (--n-jobs-per-worker)
        answers = dict(zip(INPUTS, pool.map(lambda name: server.wait(name, INPUTS[name]), INPUTS)))
    for name in ("frozenlake", "cliffwalking", "textworld"):  # played by their oracles: the optimum
        assert answers[name].get("done") is True and answers[name].get("reward") == 1.0, (name, answers[name])
    for name in ("sql_react", "recorded", "optimized"):
        last = _last_message(answers[name])
        assert last["type"] == "ai" and not last.get("tool_calls") and last["content"], (name, last)
        assert answers[name]["messages"][0]["content"] == QUESTION

    store = _store(server)
    (recorded,) = store.runs(kind="record")
    assert recorded.status == "succeeded" and recorded.graph == "sql_react" and recorded.task == "sql-q00"
    assert recorded.output["messages"][-1].content == _last_message(answers["recorded"])["content"]
    steps = store.steps(recorded.id)
    assert [s.node for s in steps][0] == "agent" and len(steps) >= 3 and len(store.model_calls(recorded.id)) >= 2

    (search,) = store.runs(kind="search")
    assert search.status == "succeeded" and search.metadata["optimizer"] == "best-of-n" and search.task == "sql-q00"
    assert search.metadata["spent"]["policy_calls"] >= 2
    tree = store.search_nodes(search.id)
    assert tree[0].id == 0 and tree[0].parent_id is None and len(tree) == search.metadata["nodes"] > 1
    rollouts = store.runs(kind="rollout", parent_id=search.id)
    (best,) = [r for r in rollouts if "best" in r.tags]
    # the agent answers with the best of the trajectories it searched, and says so in the store
    assert best.outcome == max(cast(float, r.outcome) for r in rollouts) == search.outcome
    assert best.output["messages"][-1].content == _last_message(answers["optimized"])["content"]
    assert [n.id for n in tree if n.chosen][-1] == best.metadata["search_node"]
    if best.outcome == 1.0:
        assert "40" in _last_message(answers["optimized"])["content"]


def test_every_graph_streams(server: Server) -> None:
    before = {kind: len(_store(server).runs(kind=kind)) for kind in ("record", "search")}
    with ThreadPoolExecutor(4) as pool:
        streamed = dict(zip(INPUTS, pool.map(lambda name: server.stream(name, INPUTS[name]), INPUTS)))
    for name, events in streamed.items():
        kinds = [event for event, _ in events]
        assert kinds[0] == "metadata" and "error" not in kinds, (name, events[-1:], server.tail())
        final = [data for event, data in events if event == "values"][-1]
        if name in ("frozenlake", "cliffwalking", "textworld"):
            assert final["done"] is True and final["reward"] == 1.0, name
        else:
            assert _last_message(final)["type"] == "ai" and not _last_message(final).get("tool_calls"), name
    updates = server.stream("optimized", ASK, mode="updates")
    assert [list(data) for event, data in updates if event == "updates"] == [["search"]]  # one step: the search
    store = _store(server)
    assert len(store.runs(kind="record")) == before["record"] + 1
    searches = store.runs(kind="search")
    assert len(searches) == before["search"] + 2 and all(len(store.search_nodes(s.id)) > 1 for s in searches)


MALFORMED = [(name, bad) for name in sorted(INPUTS) for bad in ({}, {"foo": 1}) if INPUTS[name] != bad]  # textworld takes {}


def test_an_empty_or_malformed_input_gets_one_line_naming_the_expected_input(server: Server) -> None:
    with ThreadPoolExecutor(4) as pool:  # the server runs 4 at a time (--n-jobs-per-worker)
        answers = list(pool.map(lambda case: server.wait(*case), MALFORMED))
    assert len(answers) == 11
    for (name, bad), answer in zip(MALFORMED, answers):
        error = answer.get("__error__") or {}
        assert error.get("error") == "InputError", (name, bad, answer)
        message = error["message"]
        graph = name if name in ("frozenlake", "cliffwalking", "textworld") else "sql_react"
        assert "\n" not in message and message.startswith(f"{graph}: "), message
        assert ("missing key" in message or "unknown key 'foo'" in message) and "it expects" in message, message
    # the recorded agent keeps each refused call, as a failed run with the message
    failed = sorted(cast(str, r.error) for r in _store(server).runs(kind="record", status="failed"))
    refused = sorted(f"InputError: {a['__error__']['message']}" for (name, _), a in zip(MALFORMED, answers) if name == "recorded")
    assert len(refused) == 2 and failed == refused
