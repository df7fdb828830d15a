"""trajgraph.export.otel: recorded and searched runs as OpenTelemetry spans, received in memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import trajgraph as tg
from tests._export_store import SEARCH_TASK, Facts, build_store
from trajgraph.errors import ConfigError
from trajgraph.export.otel import _exporter, export_spans


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    return build_store(tmp_path_factory.mktemp("otel") / "runs.db")


def spans_of(facts: Facts, **kw: Any) -> list[Any]:
    exporter = InMemorySpanExporter()
    n = export_spans(facts.path, exporter, **kw)
    spans = list(exporter.get_finished_spans())
    assert n == len(spans)
    return spans


def children(spans: list[Any], parent: Any) -> list[Any]:
    kids = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return sorted(kids, key=lambda s: (s.start_time, s.attributes.get("trajgraph.step.seq", 0)))


def test_react_run_span_tree(facts: Facts) -> None:
    run_id = facts.calc_ok[0]
    spans = spans_of(facts, run_ids=[run_id])
    store = tg.Store(facts.path, readonly=True)
    run, steps, calls = store.run(run_id), store.steps(run_id), store.model_calls(run_id)
    store.close()
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "invoke_agent calculator"
    assert root.attributes["openinference.span.kind"] == "AGENT"
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent" and root.attributes["gen_ai.agent.name"] == "calculator"
    assert root.attributes["tag.tags"] == ("calc",)
    assert root.attributes["gen_ai.usage.input_tokens"] == sum(cast(int, c.prompt_tokens) for c in calls)
    assert run.ended_at is not None
    assert root.start_time == int(run.started_at * 1e9) and root.end_time == int(run.ended_at * 1e9)
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}

    step_spans = children(spans, root)
    assert [s.name for s in step_spans] == ["agent", "execute_tool add", "agent", "execute_tool multiply", "agent"]
    assert [s.attributes["openinference.span.kind"] for s in step_spans] == ["CHAIN", "TOOL", "CHAIN", "TOOL", "CHAIN"]
    for span, step in zip(step_spans, steps, strict=True):
        assert span.attributes["trajgraph.step.seq"] == step.seq
        assert span.start_time == int(step.started_at * 1e9)
    tool = step_spans[1]
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool" and tool.attributes["gen_ai.tool.name"] == "add"
    assert json.loads(tool.attributes["input.value"]) == {"a": 2, "b": 3} and tool.attributes["output.value"] == "5.0"
    assert tool.attributes["gen_ai.tool.call.id"].startswith("call_")

    llm_spans = [s for s in spans if s.attributes["openinference.span.kind"] == "LLM"]
    assert len(llm_spans) == len(calls) == 3
    for span, call in zip(sorted(llm_spans, key=lambda s: s.attributes["trajgraph.model_call.seq"]), calls, strict=True):
        parent = next(s for s in spans if s.context.span_id == span.parent.span_id)
        assert parent.attributes["trajgraph.step.seq"] == call.step_seq and parent.name == "agent"
        a = span.attributes
        assert span.name == "chat scripted-tool-model"
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "scripted-tool-model"
        assert a["gen_ai.usage.input_tokens"] == a["llm.token_count.prompt"] == call.prompt_tokens
        assert a["gen_ai.usage.output_tokens"] == a["llm.token_count.completion"] == call.completion_tokens
        assert call.prompt_tokens is not None and call.completion_tokens is not None
        assert a["llm.token_count.total"] == call.prompt_tokens + call.completion_tokens
        assert a["llm.input_messages.0.message.role"] == "user"
        assert a["llm.input_messages.0.message.content"] == "What is (2+3)*4?"
        assert (span.end_time - span.start_time) == pytest.approx(call.latency_ms * 1e6, abs=2000)
    first = min(llm_spans, key=lambda s: s.attributes["trajgraph.model_call.seq"]).attributes
    assert first["llm.output_messages.0.message.role"] == "assistant"
    assert first["llm.output_messages.0.message.tool_calls.0.tool_call.function.name"] == "add"
    assert json.loads(first["llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments"]) == {"a": 2, "b": 3}


def test_search_tree_and_rollouts_nest_under_the_search(facts: Facts) -> None:
    everything = spans_of(facts, graph="deceptive_chain")
    roots = [s for s in everything if s.parent is None]
    # one trace per recorded env run and one per search; rollouts are not exported twice
    assert len(roots) == len(facts.env_rewards) + 1 + len([k for k in facts.real_searches if k != "react"])
    search = next(s for s in roots if s.attributes["trajgraph.run.id"] == facts.search_id)
    assert search.attributes["trajgraph.run.task"] == SEARCH_TASK and search.attributes["trajgraph.run.kind"] == "search"
    spans = [s for s in everything if s.context.trace_id == search.context.trace_id]

    store = tg.Store(facts.path, readonly=True)
    nodes = {n.id: n for n in store.search_nodes(facts.search_id)}
    store.close()
    node_spans = {s.attributes["trajgraph.search.node_id"]: s for s in spans if "trajgraph.search.node_id" in s.attributes}
    assert set(node_spans) == set(nodes) and len(nodes) == len(facts.node_values) + 1
    by_span_id = {s.context.span_id: s for s in spans}
    for nid, span in node_spans.items():
        parent = by_span_id[span.parent.span_id]
        if nodes[nid].parent_id is None:
            assert parent is search
        else:
            assert parent.attributes["trajgraph.search.node_id"] == nodes[nid].parent_id
        a = span.attributes
        assert a["trajgraph.search.chosen"] == nodes[nid].chosen and a["trajgraph.search.visits"] == nodes[nid].visits
        assert a["trajgraph.search.value"] == nodes[nid].value
        assert span.start_time <= span.end_time and span.context.trace_id == search.context.trace_id
    chosen = [nid for nid, s in node_spans.items() if s.attributes["trajgraph.search.chosen"] and nid]
    assert [node_spans[n].attributes["input.value"] for n in sorted(chosen)] == facts.best_path

    rollouts = [s for s in children(spans, search) if s.attributes["openinference.span.kind"] == "AGENT"]
    assert sorted(s.attributes["trajgraph.run.id"] for s in rollouts) == sorted(facts.rollout_rewards)
    assert all(s.attributes["trajgraph.run.kind"] == "rollout" for s in rollouts)
    decision = [s for r in rollouts for s in children(spans, r) if "trajgraph.step.action" in s.attributes]
    assert decision and all(s.name == "policy" and s.attributes["openinference.span.kind"] == "CHAIN" for s in decision)


def test_real_search_spans_match_the_store(facts: Facts) -> None:
    store = tg.Store(facts.path, readonly=True)
    for run_id in facts.real_searches.values():
        spans = spans_of(facts, run_ids=[run_id])
        nodes = store.search_nodes(run_id)
        rollouts = store.runs(parent_id=run_id)
        node_spans = [s for s in spans if "trajgraph.search.node_id" in s.attributes]
        assert sorted(s.attributes["trajgraph.search.node_id"] for s in node_spans) == [n.id for n in nodes]
        agents = [s for s in spans if s.attributes["openinference.span.kind"] == "AGENT"]
        assert len(agents) == 1 + len(rollouts)
        steps = sum(len(store.steps(r.id)) for r in rollouts)
        assert len(spans) == 1 + len(nodes) + len(rollouts) + steps
    store.close()


def test_failed_run_span_has_error_status(facts: Facts) -> None:
    (root,) = [s for s in spans_of(facts, run_ids=facts.calc_failed) if s.parent is None]
    assert root.status.status_code.name == "ERROR" and "model backend down" in root.status.description


def test_ids_are_stable_across_exports(facts: Facts) -> None:
    ids = lambda: sorted((s.context.trace_id, s.context.span_id) for s in spans_of(facts, tag="calc"))  # noqa: E731
    first = ids()
    assert first == ids() and len(set(first)) == len(first)


def test_json_file_sink(facts: Facts, tmp_path: Path) -> None:
    out = tmp_path / "spans" / "calc.jsonl"
    n = export_spans(facts.path, out, tag="calc")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == n == len(spans_of(facts, tag="calc"))
    ids = {x["context"]["span_id"] for x in lines}
    assert all(x["parent_id"] is None or x["parent_id"] in ids for x in lines)
    assert {x["attributes"]["openinference.span.kind"] for x in lines} == {"AGENT", "CHAIN", "TOOL", "LLM"}


def test_sinks_and_errors(facts: Facts, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sink must be a SpanExporter"):
        export_spans(facts.path, 42)
    with pytest.raises(ConfigError, match="kind='nope' is not a run kind"):
        export_spans(facts.path, InMemorySpanExporter(), kind="nope")
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install opentelemetry-exporter-otlp"):
            _exporter("http://127.0.0.1:4318/v1/traces")
    else:  # installed: an OTLP/HTTP exporter aimed at the URL (nothing is sent here)
        assert type(_exporter("http://127.0.0.1:4318/v1/traces")(5.0)).__name__ == "OTLPSpanExporter"
    empty = tmp_path / "empty.db"
    tg.Store(empty).setup().close()
    assert export_spans(empty, InMemorySpanExporter()) == 0


def test_cli_export_spans(facts: Facts, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trajgraph.cli import app

    out = tmp_path / "spans.jsonl"
    res = CliRunner().invoke(app, ["export", "spans", str(out), "--db", str(facts.path), "--run", facts.calc_ok[0]])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"exported {len(out.read_text().splitlines())} spans to {out}"
    assert len(out.read_text().splitlines()) == 1 + 5 + 3  # run, steps, model calls
