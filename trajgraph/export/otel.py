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
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from trajgraph.errors import ConfigError, ExportError
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
from trajgraph.store.text import utf8_data, utf8_text
from trajgraph.trajectory import ModelCall, Run, SearchNode, Step


def _sdk() -> Any:
    try:
        from opentelemetry.sdk import trace as sdk_trace
    except ImportError:
        raise ConfigError("span export needs the OpenTelemetry SDK: pip install 'trajgraph[export]'") from None
    return sdk_trace


_BATCH = 512  # spans per delivery: OTLP collectors take a few MB per request


def export_spans(
    store: Store | str | Path,
    sink: Any,
    *,
    run_ids: Sequence[str] | None = None,
    service_name: str = "trajgraph",
    deadline_s: float = 30.0,
    **filters: Any,
) -> int:
    """Send matching runs as spans to `sink`; returns the number of spans delivered.

    `sink` is any OpenTelemetry `SpanExporter`, a file path (JSON Lines, one span per
    line, as `ReadableSpan.to_json` writes it), or an `http(s)://` OTLP/HTTP
    endpoint such as `http://localhost:4318/v1/traces` (needs
    `opentelemetry-exporter-otlp-proto-http`). Rollouts of an exported search run
    are nested under it rather than exported twice.

    Spans go out in batches; a batch the sink refuses is retried with backoff
    until `deadline_s` seconds after the export began, then `ExportError` says how
    many were delivered (never a success that was not). A file that cannot be
    written raises its `OSError` at once.
    """
    deadline_s = _deadline(deadline_s)
    exporter = _exporter(sink)
    rf = RunFilter.of(**filters)
    sdk_trace = _sdk()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    ids = _Ids()
    built = _Collect()  # the SDK hands finished spans here; delivery happens in our code, errors and all
    provider = sdk_trace.TracerProvider(resource=Resource.create({"service.name": service_name}), id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(cast(Any, built)))  # a SpanExporter by shape (the SDK loads lazily)
    tracer = provider.get_tracer("trajgraph")
    delivery = _Delivery(exporter, str(sink) if isinstance(sink, (str, Path)) else type(sink).__name__, deadline_s)
    try:
        with snapshot(store) as db:
            runs = [db.run(r) for r in run_ids] if run_ids is not None else rf.runs(db)
            selected = {r.id for r in runs}
            for run in runs:
                if run.parent_id in selected and run.kind == "rollout":
                    continue  # nested under its search
                _Trace(db, tracer, ids).run(run, None)
                if len(built.spans) >= _BATCH:
                    delivery.send(built.take())
        delivery.send(built.take())
    finally:
        provider.shutdown()
        delivery.close()
    return delivery.sent


def _deadline(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"deadline_s={value!r}: give seconds, a positive number") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"deadline_s={value!r}: give seconds, a positive number")
    return seconds


class _Collect:
    """A SpanExporter that only keeps what the SDK finished, for `_Delivery` to send."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def take(self) -> list[Any]:
        out, self.spans = self.spans, []
        return out

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class _Delivery:
    """Batches to the real sink: retried with backoff inside one deadline, then one ExportError.

    An OTLP endpoint gets a fresh exporter per attempt whose own retries (for 429/503
    and refused connections) stop at the time left; its log lines are kept, and the
    last one is quoted in the error instead of being printed once per retry."""

    def __init__(self, exporter: Any, name: str, deadline_s: float) -> None:
        self.exporter, self.name, self.deadline_s = exporter, name, deadline_s
        self.deadline = time.monotonic() + deadline_s
        self.sent = 0

    def send(self, batch: list[Any]) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        backoff = 0.25
        while batch:
            left = self.deadline - time.monotonic()
            with _otel_log() as log:
                exporter = self.exporter(max(left, 0.05)) if isinstance(self.exporter, _Endpoint) else self.exporter
                try:
                    result = exporter.export(batch)
                finally:
                    if exporter is not self.exporter:
                        exporter.shutdown()
            if result == SpanExportResult.SUCCESS:
                self.sent += len(batch)
                return
            left = self.deadline - time.monotonic()
            if left <= backoff:
                why = f" ({_one_line(log[0])})" if log else ""
                raise ExportError(f"spans not delivered to {self.name}: {self.sent} sent, the next {len(batch)} refused until the "
                                  f"{self.deadline_s:g} s deadline{why}; check the endpoint, or give a longer --deadline")
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        if not isinstance(self.exporter, _Endpoint):
            self.exporter.shutdown()


@contextmanager
def _otel_log() -> Iterator[list[str]]:
    """The OTLP exporter's warnings and errors of one attempt, kept instead of printed."""
    logger = logging.getLogger("opentelemetry.exporter")
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage())

    handler = Keep(logging.WARNING)
    old = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield kept
    finally:
        logger.removeHandler(handler)
        logger.propagate = old


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit] + "…"


class _Endpoint:
    """An OTLP/HTTP endpoint: makes one exporter per delivery attempt, with the time left as its timeout."""

    def __init__(self, url: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        self.url = url
        self._cls = OTLPSpanExporter

    def __call__(self, timeout_s: float) -> Any:
        return self._cls(endpoint=self.url, timeout=timeout_s)


def _exporter(sink: Any) -> Any:
    if isinstance(sink, (str, Path)):
        text = str(sink)
        if text.startswith(("http://", "https://")):
            try:
                return _Endpoint(text)
            except ImportError:
                raise ConfigError(
                    "OTLP export needs opentelemetry-exporter-otlp-proto-http: pip install opentelemetry-exporter-otlp"
                ) from None
        if "://" in text:
            raise ConfigError(f"{text}: spans go to a .jsonl file or an http(s):// OTLP endpoint; "
                              f"{text.split('://', 1)[0]}:// is not one")
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

        try:
            for span in spans:
                self._file.write(span.to_json(indent=None) + "\n")
        except OSError as exc:  # a full disk: name the file (a closed pipe stays a BrokenPipeError)
            raise type(exc)(exc.errno, exc.strerror, str(self.path)) from None
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except OSError as exc:
                raise type(exc)(exc.errno, exc.strerror, str(self.path)) from None

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
        # OTLP is protobuf, whose strings must be UTF-8: text follows trajgraph.store.text's rule
        return self.tracer.start_span(utf8_text(name), context=ctx, start_time=_ns(start), attributes=utf8_data(attributes))

    def _end(self, span: Any, end: float, error: str | None = None) -> None:
        from opentelemetry.trace import Status, StatusCode

        if error:
            span.set_status(Status(StatusCode.ERROR, utf8_text(error)))
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
