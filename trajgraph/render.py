"""Text views of actions, observations and tasks, shared by reward models and exports.

Two agent shapes are understood: environment loops (state keys `task`,
`observation`, `action`) and message agents (`messages` with tool calls).
Anything else falls back to compact JSON, so every graph renders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from trajgraph.store.json import to_jsonable
from trajgraph.store.text import utf8_text


def _message_text(msg: Any) -> str:
    if isinstance(msg, dict) and "__lc_message__" in msg:
        msg = msg["__lc_message__"]
    if isinstance(msg, dict):
        kind, content, calls = msg.get("type"), msg.get("content"), msg.get("tool_calls") or []
        invalid = msg.get("invalid_tool_calls") or []
    else:
        kind, content, calls = getattr(msg, "type", ""), getattr(msg, "content", ""), getattr(msg, "tool_calls", []) or []
        invalid = getattr(msg, "invalid_tool_calls", []) or []
    if isinstance(content, list):  # content blocks
        content = " ".join(str(b.get("text", "")) if isinstance(b, dict) else str(b) for b in content)
    parts = [str(content)] if content else []
    for call in calls:
        args = json.dumps(call.get("args", {}), sort_keys=True, ensure_ascii=False)
        parts.append(f"{call.get('name')}({args})")
    for call in invalid:  # a malformed call is what the model did: show it, marked
        parts.append(f"{call.get('name')}(<invalid: {call.get('args')}>)")
    text = " ".join(parts)
    return f"{kind}: {text}" if kind in ("tool", "human", "user", "system") else text


def render_action(action: Any) -> str:
    """'go north' for an env loop; 'add({"a": 1, "b": 2})' for a tool-calling message."""
    if action is None:
        return ""
    if isinstance(action, str):
        return utf8_text(action)
    data = to_jsonable(action)
    if isinstance(data, dict):
        if "action" in data and isinstance(data["action"], (str, int, float)):
            return str(data["action"])
        if "messages" in data:
            msgs = data["messages"] if isinstance(data["messages"], list) else [data["messages"]]
            return " ".join(_message_text(m) for m in msgs)
        if "__lc_message__" in data:
            return _message_text(data)
        if "__command__" in data:
            return render_action(data["__command__"].get("update"))
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def render_observation(update: Any) -> str:
    """What the environment/tools answered: an observation string or tool messages."""
    if update is None:
        return ""
    data = to_jsonable(update)
    if isinstance(data, dict):
        if "observation" in data:
            return str(data["observation"])
        if "messages" in data:
            msgs = data["messages"] if isinstance(data["messages"], list) else [data["messages"]]
            return " ".join(_message_text(m) for m in msgs)
        if "__command__" in data:
            return render_observation(data["__command__"].get("update"))
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def render_task(input: Any) -> str:
    """The task as text: `task` (+ first observation) of an env loop, or the first user message."""
    data = to_jsonable(input)
    if isinstance(data, dict):
        if "task" in data:
            obs = data.get("observation")
            return f"{data['task']}\n{obs}" if obs else str(data["task"])
        if "messages" in data:
            msgs = data["messages"] if isinstance(data["messages"], list) else [data["messages"]]
            for m in msgs:
                if isinstance(m, (list, tuple)) and len(m) == 2:
                    return str(m[1])
                text = _message_text(m)
                if text:
                    return text.removeprefix("human: ")
    if isinstance(data, str):
        return data
    return json.dumps(data, sort_keys=True, ensure_ascii=False)


def steps_to_turns(steps: Iterable[Any], decision_nodes: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Recorded steps -> [(action_text, observation_text)], one pair per decision.

    A decision step opens a turn; the non-decision steps after it fill its observation.
    """
    turns: list[tuple[str, list[str]]] = []
    for step in steps:
        is_decision = step.action is not None or (decision_nodes is not None and step.node in decision_nodes)
        if is_decision:
            turns.append((render_action(step.action if step.action is not None else step.update), []))
        elif turns and step.update is not None:
            obs = render_observation(step.update)
            if obs:
                turns[-1][1].append(obs)
    return [(a, " ".join(o)) for a, o in turns]


def render_prefix(task: str, turns: Sequence[tuple[str, str]], action: str | None = None) -> str:
    """The text a reward model reads: task, then turns, then an optional candidate."""
    lines = [f"Task: {task}"]
    for i, (a, o) in enumerate(turns, 1):
        lines.append(f"[{i}] Action: {a}")
        if o:
            lines.append(f"[{i}] Observation: {o}")
    if action is not None:
        lines.append(f"Candidate: {action}")
    return "\n".join(lines)


__all__ = ["render_action", "render_observation", "render_task", "steps_to_turns", "render_prefix"]
