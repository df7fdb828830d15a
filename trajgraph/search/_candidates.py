"""Checking a proposed action before the search spends an expansion on it.

A policy's sample arrives raw: an AIMessage, a state update, or the exception the
policy raised. `Space.candidate()` turns it into a `Candidate`; the rules it
applies live here so they can be read in one place: an exception becomes a
`Failed` (an invalid candidate, never a crash), an AIMessage becomes the update
the decision node would write, and an action is invalid when it is not among
the state's admissible actions (`actions`, or the key a search names), holds a malformed tool call, or calls a tool
that no ToolNode of the graph has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.pregel import Pregel

from trajgraph._internal.langgraph import node_runnables


@dataclass
class Failed:
    """A policy sample that raised: kept as an invalid candidate."""

    exc: BaseException

    @property
    def error(self) -> str:
        return f"{type(self.exc).__name__}: {self.exc}"


def as_update(action: Any) -> Any:
    """An AIMessage as the update a message-passing decision node writes; anything else as is."""
    from langchain_core.messages import AIMessage

    if isinstance(action, AIMessage):
        return {"messages": [action]}
    return action


def not_an_update(action: Any) -> str:
    """Why a sample cannot be a decision node's state update ("" when it can).

    A decision node writes a dict (or a Command, or a state object); a policy
    that returns a bare value (the string "forward" instead of {"action": "forward"})
    made LangGraph raise InvalidUpdateError deep inside every optimizer. Such a
    sample becomes an invalid candidate with this reason instead: trajgraph does
    not guess which key it was meant for."""
    bare = (str, bytes, int, float, bool, type(None))
    if isinstance(action, bare) or (isinstance(action, (list, tuple)) and (not action or any(isinstance(a, bare) for a in action))):
        return (f"the policy returned a {type(action).__name__} ({str(action)[:60]!r}), not a state update; "
                "return a dict such as {'action': ...} or {'messages': [...]}")
    return ""  # a dict, a Command, a state object, or a list of those (as a node may return)


def validate(action: Any, state: dict[str, Any], tools: set[str] | None, actions_key: str | None = "actions") -> tuple[bool, str]:
    """(invalid, why): not an admissible action (the state lists them under `actions_key`),
    a malformed tool call, or an unknown tool."""
    admissible = state.get(actions_key) if actions_key is not None else None
    if isinstance(action, dict) and "action" in action and isinstance(admissible, list) and admissible:
        if action["action"] not in admissible:
            return True, f"not an admissible action: {action['action']!r}"
    for msg in _messages(action):
        bad = getattr(msg, "invalid_tool_calls", None) or []
        if bad:
            return True, f"malformed tool call: {bad[0].get('error') or bad[0].get('name')}"
        for call in getattr(msg, "tool_calls", None) or []:
            if tools is not None and call.get("name") not in tools:
                return True, f"unknown tool {call.get('name')!r}"
    return False, ""


def count_tokens(action: Any) -> int:
    """Total tokens the action's messages report using (0 when they report none)."""
    total = 0
    for msg in _messages(action):
        usage = getattr(msg, "usage_metadata", None) or {}
        total += int(usage.get("total_tokens") or 0)
    return total


def tool_names(graph: Pregel) -> set[str] | None:
    """Names of the tools of the graph's ToolNodes; None when it has none (any tool name passes)."""
    names: set[str] = set()
    found = False
    for bound in node_runnables(graph).values():
        tools = getattr(bound, "tools_by_name", None)
        if isinstance(tools, dict):
            found = True
            names |= set(tools)
    return names if found else None


def _messages(action: Any) -> list[Any]:
    if isinstance(action, dict) and "messages" in action:
        msgs = action["messages"]
        return list(msgs) if isinstance(msgs, (list, tuple)) else [msgs]
    return []


__all__ = ["Failed", "as_update", "not_an_update", "validate", "count_tokens", "tool_names"]
