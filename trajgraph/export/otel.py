"""Recorded runs as OpenTelemetry traces, for Phoenix, Langfuse, Jaeger or any OTLP backend.

Each run becomes one trace, rebuilt from the store with the store's timestamps:

    AGENT  invoke_agent <graph>             the run
      CHAIN  <node>                         each step (decision, environment, router...)
        LLM  chat <model>                   each model call, under the step that made it
      TOOL   execute_tool <tool>            a step whose update is tool results
      CHAIN  search_node <id>               a search run's tree, parent/child as searched
      AGENT  invoke_agent <graph>           rollouts of a search, under the search

Attributes follow both the OpenTelemetry GenAI semantic conventions
(`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...)
and OpenInference (`openinference.span.kind`, `input.value`, `llm.token_count.*`,
`llm.input_messages.<i>.message.*`), so both families of tools read them. Trace and
span ids are derived from run ids, so exporting a run twice gives the same ids.
This module shapes the trace; what each span carries is trajgraph/export/_otel_attrs.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.export._otel_attrs import (
    model_call_attrs,
    run_attrs,
    search_node_attrs,
    step_span,
    tool_attrs,
    tool_call_index,
    tool_results,
)
from trajgraph.export.read import RunFilter, snapshot
from trajgraph.store import Store
from trajgraph.trajectory import ModelCall, Run, SearchNode, Step


def _sdk() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk_trace
    except ImportError:
        raise ConfigError("span export needs the OpenTelemetry SDK: pip install 'trajgraph[export]'") from None
    return sdk_trace


def export_spans(
    store: Store | str | Path,
    sink: Any,
    *,
    run_ids: Sequence[str] | None = None,
    service_name: str = "trajgraph",
    **filters: Any,
) -> int:
    """Send matching runs as spans to `sink`; returns the number of spans.

    `sink` is any OpenTelemetry `SpanExporter`, a file path (JSON Lines, one span per
    line, as `ReadableSpan.to_json` writes it), or an `http(s)://` OTLP/HTTP
    endpoint such as `http://localhost:4318/v1/traces` (needs
    `opentelemetry-exporter-otlp-proto-http`). Rollouts of an exported search run
    are nested under it rather than exported twice.
    """
    exporter = _exporter(sink)
    rf = RunFilter.of(**filters)
    sdk_trace = _sdk()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    ids = _Ids()
    provider = sdk_trace.TracerProvider(resource=Resource.create({"service.name": service_name}), id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("trajgraph")
    spans = 0
    try:
        with snapshot(store) as db:
            runs = [db.run(r) for r in run_ids] if run_ids is not None else rf.runs(db)
            selected = {r.id for r in runs}
            for run in runs:
                if run.parent_id in selected and run.kind == "rollout":
                    continue  # nested under its search
                builder = _Trace(db, tracer, ids)
                builder.run(run, None)
                spans += builder.ended
    finally:
        provider.shutdown()  # flushes and shuts the exporter down
    return spans


def _exporter(sink: Any) -> Any:
    if isinstance(sink, (str, Path)):
        text = str(sink)
        if text.startswith(("http://", "https://")):
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                raise ConfigError(
                    "OTLP export needs opentelemetry-exporter-otlp-proto-http: pip install opentelemetry-exporter-otlp"
                ) from None
            return OTLPSpanExporter(endpoint=text)
        return JsonFileSpanExporter(text)
    if not callable(getattr(sink, "export", None)):
        raise ConfigError(f"sink must be a SpanExporter, a file path or an OTLP URL, not {type(sink).__name__}")
    return sink


class JsonFileSpanExporter:
    """Writes each span as one line of JSON (`ReadableSpan.to_json`) to a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        for span in spans:
            self._file.write(span.to_json(indent=None) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if not self._file.closed:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._file.flush()
        return True


class _Ids:
    """Deterministic ids: set `trace`/`span` before each start_span (export is single-threaded)."""

    trace = 1
    span = 1

    def generate_trace_id(self) -> int:
        return self.trace

    def generate_span_id(self) -> int:
        return self.span

    def is_trace_id_random(self) -> bool:
        return False  # derived from the run id, so samplers must not treat it as random


def _id(bits: int, *parts: Any) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[: bits // 8], "big") or 1


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1e9)


class _Trace:
    """Builds the spans of one run (and what hangs under it)."""

    def __init__(self, db: Store, tracer: Any, ids: _Ids) -> None:
        self.db, self.tracer, self.ids = db, tracer, ids
        self.ended = 0

    def _start(self, name: str, parent: Any, span_key: tuple[Any, ...], start: float, attributes: dict[str, Any]) -> Any:
        from opentelemetry import trace

        self.ids.span = _id(64, *span_key)
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(name, context=ctx, start_time=_ns(start), attributes=attributes)

    def _end(self, span: Any, end: float, error: str | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=_ns(end))
        self.ended += 1

    def run(self, run: Run, parent: Any) -> None:
        steps = self.db.steps(run.id)
        calls = self.db.model_calls(run.id)
        nodes = self.db.search_nodes(run.id)
        children = [r for r in self.db.runs(parent_id=run.id, newest_first=False) if r.kind == "rollout"]
        if parent is None:
            self.ids.trace = _id(128, run.id)
        ends = [s.started_at + s.latency_ms / 1000 for s in steps] + [n.created_at for n in nodes]
        ends += [c.ended_at or c.started_at for c in children]
        end = run.ended_at or max([run.started_at, *ends])
        span = self._start(f"invoke_agent {run.graph}", parent, (run.id, "run"), run.started_at, run_attrs(run, calls))
        by_step: dict[int | None, list[ModelCall]] = {}
        for call in calls:
            by_step.setdefault(call.step_seq, []).append(call)
        tool_calls = tool_call_index(calls)
        for step in steps:
            self.step(run, step, span, by_step.pop(step.seq, []), tool_calls)
        for leftover in by_step.values():  # calls not made inside a recorded step
            t = run.started_at
            for call in leftover:
                t = self.model_call(run, call, span, t)
        if nodes:
            self.tree(run, nodes, span)
        for child in children:
            self.run(child, span)
        self._end(span, end, run.error if run.status == "failed" else None)

    def step(self, run: Run, step: Step, parent: Any, calls: list[ModelCall], tool_calls: dict[str, dict[str, Any]]) -> None:
        results = tool_results(step.update)
        end = step.started_at + step.latency_ms / 1000
        name, attrs = step_span(step, results, tool_calls)
        span = self._start(name, parent, (run.id, "step", step.seq), step.started_at, attrs)
        t = step.started_at
        for call in calls:
            t = self.model_call(run, call, span, t)
        if len(results) > 1:  # parallel tool calls in one ToolNode step
            for i, r in enumerate(results):
                tc = tool_calls.get(r.get("tool_call_id") or "", {})
                child = self._start(f"execute_tool {r.get('name')}", span, (run.id, "tool", step.seq, i), step.started_at, tool_attrs(r, tc))
                self._end(child, end)
        self._end(span, max(end, t), step.error)

    def model_call(self, run: Run, call: ModelCall, parent: Any, start: float) -> float:
        """An LLM span. The store keeps each call's latency, not its start: calls of one
        step are laid end to end from the step's start."""
        end = start + call.latency_ms / 1000
        span = self._start(f"chat {call.model}".strip(), parent, (run.id, "call", call.seq), start, model_call_attrs(call))
        self._end(span, end, call.error)
        return end

    def tree(self, run: Run, nodes: Sequence[SearchNode], parent: Any) -> None:
        """Search nodes as nested spans; a node's span lasts until its last descendant was created."""
        kids: dict[int | None, list[SearchNode]] = {}
        by_id = {n.id: n for n in nodes}
        for n in nodes:
            kids.setdefault(n.parent_id if n.parent_id in by_id else None, []).append(n)
        last: dict[int, float] = {}

        def subtree_end(n: SearchNode) -> float:
            if n.id not in last:
                last[n.id] = max([n.created_at, *(subtree_end(k) for k in kids.get(n.id, []))])
            return last[n.id]

        stack: list[tuple[SearchNode, Any]] = [(n, parent) for n in reversed(kids.get(None, []))]
        opened: list[tuple[Any, float]] = []
        while stack:
            node, up = stack.pop()
            span = self._start(f"search_node {node.id}", up, (run.id, "node", node.id), node.created_at, search_node_attrs(node))
            opened.append((span, subtree_end(node)))
            for kid in reversed(kids.get(node.id, [])):
                stack.append((kid, span))
        for span, end in reversed(opened):  # children end before their parents
            self._end(span, end)


__all__ = ["export_spans", "JsonFileSpanExporter"]
