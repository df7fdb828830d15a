"""JSON encoding of LangGraph state values, with no pickle anywhere.

State updates hold LangChain messages, pydantic models, dataclasses, `Send` and
`Command` objects. We encode the ones we know as tagged dicts and everything
else as its `repr`, so a stored row is always plain JSON and decoding can only
rebuild messages (never run code).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from langchain_core.messages import BaseMessage

_MSG = "__lc_message__"
_OBJ = "__repr__"


def to_jsonable(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """Turn a state value into plain JSON types (lossy only for unknown objects).

    `memo` (id -> JSON form) lets one batch of rows encode each message once:
    a conversation's messages reappear in every later model call's input. The
    caller keeps the encoded objects alive while the memo lives, so ids stay unique.
    """
    kind = type(value)  # exact-type fast paths first: this runs for every value of every recorded row
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): to_jsonable(v, memo) for k, v in value.items()}
    if kind is list:
        return [to_jsonable(v, memo) for v in value]
    if isinstance(value, BaseMessage):  # before the ABC checks below: messages are most of what is left
        if memo is None:
            return {_MSG: _dump_message(value)}
        found = memo.get(id(value))
        if found is None:
            found = memo[id(value)] = {_MSG: _dump_message(value)}
        return found
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, memo) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, memo) for v in value]
    # langgraph control objects: keep their fields, not their class
    cls = type(value).__name__
    if cls == "Send":
        return {"__send__": {"node": value.node, "arg": to_jsonable(value.arg, memo)}}
    if cls == "Command":
        return {
            "__command__": {
                "update": to_jsonable(value.update, memo),
                "goto": to_jsonable(value.goto, memo),
                "resume": to_jsonable(value.resume, memo),
            }
        }
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return to_jsonable(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), memo)
    if isinstance(value, bytes):
        return {_OBJ: f"<{len(value)} bytes>"}
    return {_OBJ: repr(value)}


_EMPTY_DEFAULTS = ("additional_kwargs", "response_metadata", "tool_calls", "invalid_tool_calls")


def _dump_message(message: BaseMessage) -> dict[str, Any]:
    """The message's fields, without the empty ones its constructor fills in again (a third of the bytes)."""
    data = message.model_dump(mode="json", exclude_none=True)
    for key in _EMPTY_DEFAULTS:
        if key in data and not data[key]:
            del data[key]
    return data


def from_jsonable(value: Any) -> Any:
    """Rebuild messages inside decoded JSON; every other value stays plain data."""
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    if isinstance(value, dict):
        if _MSG in value and len(value) == 1:
            return _message(value[_MSG])
        if "__send__" in value and len(value) == 1:
            from langgraph.types import Send

            return Send(value["__send__"]["node"], from_jsonable(value["__send__"]["arg"]))
        if "__command__" in value and len(value) == 1:
            from langgraph.types import Command

            body = value["__command__"]
            kwargs = {k: from_jsonable(v) for k, v in body.items() if v is not None}
            return Command(**kwargs)
        return {k: from_jsonable(v) for k, v in value.items()}
    return value


_MESSAGE_TYPES = {
    "ai": "AIMessage",
    "AIMessageChunk": "AIMessage",
    "human": "HumanMessage",
    "system": "SystemMessage",
    "tool": "ToolMessage",
    "function": "FunctionMessage",
    "remove": "RemoveMessage",
    "chat": "ChatMessage",
}


def _message(data: dict[str, Any]) -> Any:
    import langchain_core.messages as m

    kind = _MESSAGE_TYPES.get(str(data.get("type")), "ChatMessage")
    cls = getattr(m, kind)
    fields = {k: v for k, v in data.items() if k != "type" and k in cls.model_fields}
    if kind == "ChatMessage":
        fields.setdefault("role", str(data.get("type", "unknown")))
    return cls(**fields)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

try:  # langchain-core's langsmith already brings orjson; encoding is most of the writer's time
    import orjson

    def _encode(data: Any) -> str:
        try:
            return orjson.dumps(data).decode()
        except TypeError:  # orjson.JSONEncodeError: an int past 64 bits, a lone surrogate; the slow path copes
            return _ENCODER.encode(data)

except ImportError:  # pragma: no cover - a Python where langsmith skips orjson

    def _encode(data: Any) -> str:
        return _ENCODER.encode(data)


def dumps(value: Any, memo: dict[int, Any] | None = None) -> str:
    return _encode(to_jsonable(value, memo))


def loads(text: str | None) -> Any:
    if text is None or text == "":
        return None
    return from_jsonable(json.loads(text))


def canonical(value: Any) -> Any:
    """JSON form with the volatile parts removed, for comparing runs.

    `add_messages` gives id-less messages random ids, and providers attach
    timing/usage metadata; neither says anything about what the agent did.
    """
    data = to_jsonable(value)
    return _strip(data)


_VOLATILE = {"id", "response_metadata", "usage_metadata", "tool_call_id", "lc_attributes"}


def _strip(data: Any) -> Any:
    if isinstance(data, dict):
        if _MSG in data:
            msg = {k: v for k, v in data[_MSG].items() if k not in _VOLATILE}
            if msg.get("tool_calls"):  # copies: the JSON form may be shared (see to_jsonable's memo)
                msg["tool_calls"] = [{k: v for k, v in call.items() if k != "id"} for call in msg["tool_calls"]]
            msg.pop("invalid_tool_calls", None) if not msg.get("invalid_tool_calls") else None
            return {_MSG: _strip(msg)}
        return {k: _strip(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_strip(v) for v in data]
    return data


def canonical_key(value: Any) -> str:
    """A stable string for deduplicating actions and comparing updates."""
    return json.dumps(canonical(value), sort_keys=True, ensure_ascii=False)
