"""Every reader over a store seeded with hostile values (issue 21 item 3): one UTF-8 rule everywhere.

The store keeps a lone surrogate exactly; everything that leaves as text (dataset
files, `--json`, the viewer's API, training data, spans) must be valid UTF-8 and
show it as the `\\udce9` escape (trajgraph/store/text.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from trajgraph.store.text import utf8_data, utf8_text
from trajgraph.testing.hostile import HOSTILE_TEXT, SURROGATE, seed_hostile_store, seeded_store

ESCAPED = "caf\\udce9"  # the rule's form of SURROGATE: a backslash, then udce9


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "trajgraph.cli", *args], capture_output=True, cwd=cwd, timeout=300)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def utf8_clean(value: Any) -> bool:
    """Every string UTF-8 can hold (no lone surrogate left)."""
    try:
        for s in strings(value):
            s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seeded_store(tmp_path_factory.mktemp("hostile") / "hostile.db")


def test_the_rule() -> None:
    assert utf8_text(SURROGATE) == ESCAPED
    assert utf8_text("café") == "café"
    assert utf8_data({SURROGATE: [SURROGATE, 1]}) == {ESCAPED: [ESCAPED, 1]}


def test_python_readers_still_get_the_exact_value(db: Path) -> None:
    store = tg.Store(db, readonly=True)
    (run,) = [r for r in store.runs() if r.graph.startswith("lone surrogate")]
    assert store.steps(run.id)[0].update["value"] == SURROGATE + ".txt"
    assert ESCAPED in run.graph  # a plain-text column holds the escape already


@pytest.mark.parametrize("kind", ["sft", "dpo", "prm"])
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_exports(db: Path, tmp_path: Path, kind: str, suffix: str) -> None:
    out = tmp_path / f"{kind}{suffix}"
    done = cli("export", kind, str(out), "--db", str(db))
    assert done.returncode == 0, done.stderr
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out).to_pylist()
    assert rows and utf8_clean(rows)
    assert any(ESCAPED in s for s in strings(rows))


def test_runs_and_show_json_are_utf8(db: Path) -> None:
    done = cli("runs", "--json", "--db", str(db))
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout.decode("utf-8"))  # strict: a raw \xe9 byte fails here
    assert len(runs) >= 15
    seen = ""
    for run in runs:
        shown = cli("show", run["id"], "--json", "--tree", "--db", str(db))
        assert shown.returncode == 0, shown.stderr
        seen += json.dumps(json.loads(shown.stdout.decode("utf-8")))
    assert ESCAPED.replace("\\", "\\\\") in seen


def test_training_data(db: Path) -> None:
    from trajgraph.learn.data import decisions, mc_preferences, preferences, state_key
    from trajgraph.reward.data import build_dataset

    found: list[list[Any]] = [decisions(db), preferences(db), mc_preferences(db)]
    assert all(found), [len(f) for f in found]
    for items in found:
        for item in items:
            assert utf8_clean(vars(item)), item
            state_key(item.state)
    data = build_dataset(tg.Store(db, readonly=True))
    texts = [e.item.text for e in data.examples] + [p.chosen.text for p in data.pairs]
    assert texts and all(utf8_clean(t) for t in texts)
    assert any(ESCAPED in t for t in texts)


def test_training_commands(db: Path, tmp_path: Path) -> None:
    """`train policy` (head) and `reward train` on the hostile store: the tokenizers get text they take."""
    policy = cli("train", "policy", str(tmp_path / "policy"), "--db", str(db), "--epochs", "1")
    assert policy.returncode == 0, policy.stderr[-500:]
    reward = cli("reward", "train", str(tmp_path / "rm"), "--db", str(db), "--epochs", "1", "--probe-steps", "0", "--no-progress")
    assert reward.returncode == 0, reward.stderr[-500:]


def test_viewer_api(db: Path) -> None:
    from trajgraph.view.server import ViewServer

    srv = ViewServer(db)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        def get(path: str) -> Any:
            with urllib.request.urlopen(srv.url.rstrip("/") + path, timeout=20) as res:
                assert res.status == 200
                return json.loads(res.read().decode("utf-8"))

        pages = [get("/api/runs")]
        for run in pages[0]["runs"]:
            for path in ("run", "steps", "turns", "tree"):
                pages.append(get(f"/api/{path}?id={run['id']}"))
        assert any(ESCAPED in s for s in strings(pages))
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def test_spans(db: Path, tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    n = tg.export_spans(db, memory)
    spans = memory.get_finished_spans()
    assert n == len(spans) > 0
    encode_spans(spans).SerializeToString()  # OTLP is protobuf: its strings must be UTF-8
    out = tmp_path / "spans.jsonl"
    assert tg.export_spans(db, out) == n
    text = out.read_bytes().decode("utf-8")
    assert "\\udce9" in text and "f\\udce9" not in text  # the text escape, never a JSON lone-surrogate escape


def test_non_utf8_filters_match_the_stored_escape(db: Path, tmp_path: Path) -> None:
    """A tag given as non-UTF-8 bytes on the command line reads as the stored tag."""
    store = tg.Store(tmp_path / "tag.db")
    tg.record(tg.testing.react_calculator_agent(tg.testing.ScriptedToolModel(script=["ok"])), store=store,
              tags=[SURROGATE]).invoke({"messages": [("user", "hi")]})
    store.close()
    import os

    done = subprocess.run([os.fsencode(sys.executable), b"-m", b"trajgraph.cli", b"runs", b"--json", b"--tag", b"caf\xe9",
                           b"--db", os.fsencode(tmp_path / "tag.db")], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout.decode("utf-8"))
    assert run["tags"] == [ESCAPED]


def test_postgres_readers(postgres: Any) -> None:
    """The same rule on Postgres: the Python readers (exports, training data, spans) over a seeded store."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from trajgraph.export import dpo_dataset, prm_dataset, sft_dataset
    from trajgraph.learn.data import decisions, preferences

    store = postgres.store()
    seed_hostile_store(store)
    store.flush()
    for rows in (sft_dataset(store), dpo_dataset(store), prm_dataset(store), decisions(store), preferences(store)):
        assert rows and utf8_clean([vars(r) if not isinstance(r, dict) else r for r in rows])
    memory = InMemorySpanExporter()
    tg.export_spans(store, memory)
    encode_spans(memory.get_finished_spans()).SerializeToString()
    assert any(HOSTILE_TEXT[:3] in s for s in strings([r.graph for r in store.runs()]))


