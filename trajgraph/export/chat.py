"""Stored LangChain messages as chat messages in TRL's (OpenAI-style) format.

Shared by the dataset exports, the span export and the viewer, so a message looks
the same in a training row, an LLM span and the page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from trajgraph.render import render_task, steps_to_turns
from trajgraph.store.json import to_jsonable
from trajgraph.trajectory import ModelCall, Run, Step

_ROLES = {"human": "user", "ai": "assistant", "AIMessageChunk": "assistant", "system": "system", "tool": "tool", "function": "tool"}


def chat_message(msg: Any) -> dict[str, Any]:
    """One LangChain message (object, stored JSON, tuple or OpenAI dict) as a TRL chat message.

    Tool calls follow TRL's tool-calling format: `{"type": "function", "function":
    {"name", "arguments": {...}}}` on the assistant message, and `role: "tool"`
    messages with the tool's `name`.
    """
    data = to_jsonable(msg)
    if isinstance(data, list) and len(data) == 2 and isinstance(data[0], str):  # ("user", "text")
        return {"role": _ROLES.get(data[0], data[0]), "content": _text(data[1])}
    if isinstance(data, str):
        return {"role": "user", "content": data}
    if not isinstance(data, dict):
        return {"role": "user", "content": json.dumps(data, ensure_ascii=False)}
    data = data.get("__lc_message__", data)
    role = data.get("role") or _ROLES.get(str(data.get("type")), str(data.get("type") or "user"))
    out: dict[str, Any] = {"role": role, "content": _text(data.get("content"))}
    calls = data.get("tool_calls") or []
    if calls:
        out["tool_calls"] = [_tool_call(c) for c in calls]
    if role == "tool":
        if data.get("name"):
            out["name"] = data["name"]
        if data.get("tool_call_id"):
            out["tool_call_id"] = data["tool_call_id"]
    return out


def readable_update(update: Any) -> Any:
    """A node update as plain JSON with its LangChain messages in chat form."""
    data = to_jsonable(update)
    if isinstance(data, dict) and "messages" in data:
        msgs = data["messages"] if isinstance(data["messages"], list) else [data["messages"]]
        return {**data, "messages": [chat_message(m) for m in msgs]}
    return data


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    if "function" in call:  # already OpenAI-shaped
        fn = dict(call["function"])
        if isinstance(fn.get("arguments"), str):
            try:
                fn["arguments"] = json.loads(fn["arguments"])
            except json.JSONDecodeError:
                pass
        out = {"type": "function", "function": fn}
    else:
        out = {"type": "function", "function": {"name": call.get("name"), "arguments": call.get("args") or {}}}
    if call.get("id"):
        out["id"] = call["id"]
    return out


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return json.dumps(to_jsonable(content), ensure_ascii=False)


def _key(message: dict[str, Any]) -> str:
    """What makes two messages the same turn (ids differ between calls)."""
    calls = [(c["function"].get("name"), c["function"].get("arguments")) for c in message.get("tool_calls", [])]
    return json.dumps([message["role"], message["content"], calls], sort_keys=True, ensure_ascii=False, default=str)


def conversations(calls: Iterable[ModelCall]) -> list[list[dict[str, Any]]]:
    """The model calls of one run as whole conversations, exactly as the model saw them.

    A ReAct agent resends its history on every call, so call i+1's messages start
    with call i's messages and response: those calls are one conversation and the
    last call holds it all. A call whose messages continue no earlier conversation
    (another agent, a trimmed context) starts its own.
    """
    chains: list[tuple[list[str], list[dict[str, Any]]]] = []
    for call in calls:
        if call.error is not None or call.response is None:
            continue
        messages = [chat_message(m) for m in call.messages or []]
        response = chat_message(call.response)
        response["role"] = "assistant"
        keys = [_key(m) for m in messages]
        full, full_keys = [*messages, response], [*keys, _key(response)]
        for i, (chain_keys, _) in enumerate(chains):
            if keys[: len(chain_keys)] == chain_keys:
                chains[i] = (full_keys, full)
                break
        else:
            chains.append((full_keys, full))
    return [c for _, c in chains]


def state_messages(run: Run, steps: Sequence[Step]) -> list[dict[str, Any]] | None:
    """A message agent's conversation rebuilt from its graph state: the input
    messages, then each node's new messages. For runs with steps but no recorded
    model calls (a search's rollouts); None when no step adds messages."""
    data = to_jsonable(run.input)
    out = [chat_message(m) for m in _messages_of(data)]
    found = False
    for step in steps:
        new = _messages_of(to_jsonable(step.update))
        found = found or bool(new)
        out.extend(chat_message(m) for m in new)
    return out if found else None


def _messages_of(data: Any) -> list[Any]:
    if isinstance(data, dict) and "messages" in data:
        return data["messages"] if isinstance(data["messages"], list) else [data["messages"]]
    return []


def turns_messages(run: Run, steps: Sequence[Step]) -> list[dict[str, Any]]:
    """An env-loop run as a chat: the task, then each action and the observation it got.

    The observation after the last action is dropped: nothing follows it to learn.
    """
    messages = [{"role": "user", "content": render_task(run.input)}]
    turns = steps_to_turns(steps)
    for i, (action, observation) in enumerate(turns):
        messages.append({"role": "assistant", "content": action})
        if observation and i < len(turns) - 1:
            messages.append({"role": "user", "content": observation})
    return messages


__all__ = ["chat_message", "conversations", "state_messages", "turns_messages", "readable_update"]
