"""Span attributes of the OpenTelemetry export: what each span says about a run, step, call or search node.

otel.py decides the shape of a trace (which spans, nested how, timed how); this
module decides what each span carries. The names follow two conventions at once,
the OpenTelemetry GenAI semantic conventions (`gen_ai.*`) and OpenInference
(`openinference.span.kind`, `input.value`, `llm.*`), plus `trajgraph.*` for
what only a trajectory store knows (run kind, step seq, search values). Values
are plain strings and numbers: None is dropped and long JSON is truncated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from trajgraph.export.chat import chat_message, readable_update
from trajgraph.render import render_action
from trajgraph.store.json import to_jsonable
from trajgraph.trajectory import ModelCall, Run, SearchNode, Step

_MAX_VALUE = 32_000  # characters kept of one input/output value: backends truncate or reject beyond


def run_attrs(run: Run, calls: Sequence[ModelCall]) -> dict[str, Any]:
    """The AGENT span of a run, with the token usage of all its model calls."""
    usage_in = sum(c.prompt_tokens or 0 for c in calls)
    usage_out = sum(c.completion_tokens or 0 for c in calls)
    return _attrs(**{
        "openinference.span.kind": "AGENT",
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": run.graph or None,
        "gen_ai.agent.id": run.graph_path,
        "gen_ai.conversation.id": run.thread_id,
        "agent.name": run.graph or None,
        "session.id": run.thread_id,
        "input.value": _json(run.input),
        "input.mime_type": "application/json",
        "output.value": None if run.output is None else _json(run.output),
        "output.mime_type": None if run.output is None else "application/json",
        "tag.tags": list(run.tags) or None,
        "metadata": _json({**run.metadata, "run_id": run.id, "kind": run.kind, "task": run.task, "outcome": run.outcome}),
        "gen_ai.usage.input_tokens": usage_in if calls else None,
        "gen_ai.usage.output_tokens": usage_out if calls else None,
        "llm.token_count.prompt": usage_in if calls else None,
        "llm.token_count.completion": usage_out if calls else None,
        "llm.token_count.total": usage_in + usage_out if calls else None,
        "trajgraph.run.id": run.id,
        "trajgraph.run.kind": run.kind,
        "trajgraph.run.status": run.status,
        "trajgraph.run.outcome": run.outcome,
        "trajgraph.run.task": run.task,
        "trajgraph.run.parent_id": run.parent_id,
    })


def step_span(step: Step, results: list[dict[str, Any]], tool_calls: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Name and attributes of a step's span: TOOL when its update is tool results, else CHAIN."""
    base = {
        "graph.node.id": step.node,
        "graph.node.name": step.node,
        "output.value": None if step.update is None else _json(readable_update(step.update)),
        "output.mime_type": None if step.update is None else "application/json",
        "langgraph.step": step.lg_step,
        "langgraph.path": step.path or None,
        "langgraph.checkpoint_ns": step.namespace or None,
        "trajgraph.step.seq": step.seq,
        "trajgraph.step.action": None if step.action is None else render_action(step.action),
        "trajgraph.step.reward": step.reward,
    }
    if not results:
        return step.node, _attrs(**{**base, "openinference.span.kind": "CHAIN"})
    names = [r.get("name") or "" for r in results]
    args = [tool_calls.get(r.get("tool_call_id") or "", {}).get("arguments") for r in results]
    attrs = _attrs(**{
        **base,
        "openinference.span.kind": "TOOL",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": ", ".join(names),
        "tool.name": ", ".join(names),
        "gen_ai.tool.call.id": results[0].get("tool_call_id") if len(results) == 1 else None,
        "tool.parameters": _json(args[0]) if len(results) == 1 and args[0] is not None else None,
        "input.value": _json(args if len(args) > 1 else args[0]) if any(a is not None for a in args) else None,
        "input.mime_type": "application/json" if any(a is not None for a in args) else None,
        "output.value": results[0]["content"] if len(results) == 1 else _json([r["content"] for r in results]),
        "output.mime_type": "text/plain" if len(results) == 1 else "application/json",
    })
    return f"execute_tool {', '.join(names)}", attrs


def tool_attrs(result: dict[str, Any], tool_call: dict[str, Any]) -> dict[str, Any]:
    """One of several parallel tool calls of a ToolNode step."""
    return _attrs(**{
        "openinference.span.kind": "TOOL",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": result.get("name"),
        "tool.name": result.get("name"),
        "gen_ai.tool.call.id": result.get("tool_call_id"),
        "input.value": None if tool_call.get("arguments") is None else _json(tool_call["arguments"]),
        "output.value": result.get("content"),
    })


def model_call_attrs(call: ModelCall) -> dict[str, Any]:
    """The LLM span of a model call, messages flattened the OpenInference way."""
    messages = [chat_message(m) for m in call.messages or []]
    response = chat_message(call.response) if call.response is not None else None
    attrs: dict[str, Any] = _attrs(**{
        "openinference.span.kind": "LLM",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": call.model or None,
        "gen_ai.response.model": call.model or None,
        "gen_ai.provider.name": _provider(call.model),
        "gen_ai.request.temperature": _float(call.params.get("temperature")),
        "gen_ai.request.max_tokens": _int(call.params.get("max_tokens")),
        "gen_ai.request.top_p": _float(call.params.get("top_p")),
        "gen_ai.usage.input_tokens": call.prompt_tokens,
        "gen_ai.usage.output_tokens": call.completion_tokens,
        "llm.model_name": call.model or None,
        "llm.system": _provider(call.model),
        "llm.invocation_parameters": _json(call.params),
        "llm.token_count.prompt": call.prompt_tokens,
        "llm.token_count.completion": call.completion_tokens,
        "llm.token_count.total": None if call.prompt_tokens is None or call.completion_tokens is None
        else call.prompt_tokens + call.completion_tokens,
        "input.value": _json(messages),
        "input.mime_type": "application/json",
        "output.value": None if response is None else _json(response),
        "output.mime_type": None if response is None else "application/json",
        "trajgraph.model_call.seq": call.seq,
    })
    attrs.update(_flat_messages("llm.input_messages", messages))
    if response is not None:
        attrs.update(_flat_messages("llm.output_messages", [response]))
    return attrs


def search_node_attrs(node: SearchNode) -> dict[str, Any]:
    """A node of a search tree, with the values the search gave it."""
    return _attrs(**{
        "openinference.span.kind": "CHAIN",
        "input.value": node.action_text or None,
        "output.value": node.observation or None,
        "trajgraph.search.node_id": node.id,
        "trajgraph.search.parent_id": node.parent_id,
        "trajgraph.search.depth": node.depth,
        "trajgraph.search.action": node.action_text,
        "trajgraph.search.score": node.score,
        "trajgraph.search.value": node.value,
        "trajgraph.search.visits": node.visits,
        "trajgraph.search.outcome": node.outcome,
        "trajgraph.search.terminal": node.terminal,
        "trajgraph.search.chosen": node.chosen,
        "trajgraph.search.invalid": node.invalid,
        "trajgraph.search.reason": node.reason or None,
    })


def tool_call_index(calls: Sequence[ModelCall]) -> dict[str, dict[str, Any]]:
    """tool_call_id -> the call's function (name, arguments), from the model responses."""
    index: dict[str, dict[str, Any]] = {}
    for call in calls:
        if call.response is None:
            continue
        for tc in chat_message(call.response).get("tool_calls", []):
            if tc.get("id"):
                index[tc["id"]] = tc["function"]
    return index


def tool_results(update: Any) -> list[dict[str, Any]]:
    """The tool messages of a step's update, when that is all it holds (else [])."""
    data = to_jsonable(update)
    if not isinstance(data, dict) or "messages" not in data:
        return []
    msgs = data["messages"] if isinstance(data["messages"], list) else [data["messages"]]
    out = [chat_message(m) for m in msgs]
    return out if out and all(m["role"] == "tool" for m in out) else []


def _json(value: Any) -> str:
    text = json.dumps(to_jsonable(value), ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE] + "…"


def _attrs(**kv: Any) -> dict[str, Any]:
    """Drop None: OpenTelemetry attributes cannot hold it."""
    return {k: v for k, v in kv.items() if v is not None}


def _flat_messages(prefix: str, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """OpenInference's flattened message list: prefix.<i>.message.role / content / tool_calls.<j>..."""
    out: dict[str, Any] = {}
    for i, m in enumerate(messages):
        p = f"{prefix}.{i}.message"
        out[f"{p}.role"] = m["role"]
        out[f"{p}.content"] = m["content"]
        if m.get("name"):
            out[f"{p}.name"] = m["name"]
        if m.get("tool_call_id"):
            out[f"{p}.tool_call_id"] = m["tool_call_id"]
        for j, tc in enumerate(m.get("tool_calls", [])):
            q = f"{p}.tool_calls.{j}.tool_call"
            if tc.get("id"):
                out[f"{q}.id"] = tc["id"]
            out[f"{q}.function.name"] = tc["function"].get("name") or ""
            out[f"{q}.function.arguments"] = _json(tc["function"].get("arguments"))
    return out


def _provider(model: str) -> str | None:
    """litellm-style 'openai/gpt-4o' -> 'openai'; unknown otherwise."""
    return model.split("/", 1)[0] if "/" in model else None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


__all__ = ["run_attrs", "step_span", "tool_attrs", "model_call_attrs", "search_node_attrs", "tool_call_index", "tool_results"]
