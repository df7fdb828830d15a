"""JSON encoding of LangGraph state values, with no pickle anywhere.

State updates hold LangChain messages, pydantic models, dataclasses, `Send` and
`Command` objects. We encode the ones we know as tagged dicts and everything
else as its `repr`, so a stored row is always plain JSON and decoding can only
rebuild messages and plain values (never run code).

Nothing is changed silently. Values JSON has no form for are stored in a
marked, lossless form and come back as they went in: NaN and infinities
(`{"__tg_float__": "nan"}`), bytes (`{"__tg_bytes__": base64}`), dicts with
non-string keys such as both `1` and `"1"` (`{"__tg_dict__": [[key, value], ...]}`),
numpy arrays (`{"__tg_array__": {dtype, shape, data}}`). A value that cannot be
encoded at all (a self-referencing dict, nesting deeper than JSON readers
manage, an object whose `__repr__` raises) is stored as
`{"__tg_unstored__": {"reason", "type", "json"}}`: the reason, and the whole
value as JSON text, written without recursion (a cycle is marked where it closes).

User data that happens to look like a tag (a tool's JSON with a `__lc_message__`
or `__send__` key) must come back as data: such keys are escaped with a leading
`~` on write (`~__send__`; `~~__send__` for `~__send__`) and unescaped on read.
Reading never raises because of a value's shape: a tagged dict that cannot be
revived (foreign or older data) comes back as the plain dict it is.

Text that leaves trajgraph is UTF-8 (one rule, `trajgraph.store.text.utf8_text`): a lone surrogate,
which the store keeps exactly (`"caf\\udce9"`, what `os.fsdecode` gives for a
non-UTF-8 file name) but UTF-8 cannot hold, is written as its backslash escape,
the six characters `\\udce9`. The store's plain-text columns (graph names, tags,
errors) hold that escape already; the JSON view (`to_jsonable` without `escape`)
applies it to every string, so exports, training data, `--json`, the viewer's API
and spans all read the same text. Python readers of the store (`Store.steps`,
replay) still get the value exactly.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from typing import Any, cast

from trajgraph.store.text import utf8_text

_MSG = MESSAGE_TAG = "__lc_message__"  # a LangChain message, as the store writes it
_OBJ = "__repr__"
_SEND = "__send__"
_COMMAND = "__command__"
_FLOAT = "__tg_float__"
_BYTES = "__tg_bytes__"
_DICT = "__tg_dict__"
_ARRAY = "__tg_array__"
_UNSTORED = "__tg_unstored__"
_CYCLE = "__tg_cycle__"
TAGS = frozenset({_MSG, _OBJ, _SEND, _COMMAND, _FLOAT, _BYTES, _DICT, _ARRAY, _UNSTORED, _CYCLE})
_ESCAPE = "~"
_MAX_DEPTH = 255  # orjson's own limit; JSON readers recurse, so deeper values go to the flat fallback


def _escape(key: str) -> str:
    """A user key that reads as a tag gets one more leading `~` (a bijection on strings)."""
    return _ESCAPE + key if key.lstrip(_ESCAPE) in TAGS else key


def _unescape(key: str) -> str:
    return key[1:] if key[:1] == _ESCAPE and key.lstrip(_ESCAPE) in TAGS else key


def to_jsonable(value: Any, memo: dict[int, Any] | None = None, escape: bool = False) -> Any:
    """Turn a state value into plain JSON types; see the module docstring for the marked forms.

    `memo` (id -> JSON form) lets one batch of rows encode each message once:
    a conversation's messages reappear in every later model call's input. The
    caller keeps the encoded objects alive while the memo lives, so ids stay unique.
    Raises RecursionError on a cycle or extreme nesting (`dumps` falls back then).
    `escape=True` (what the store writes) escapes user keys that read as tags; without
    it the result is a JSON view for display and export, and to_jsonable of it is itself.
    """
    kind = type(value)  # exact-type fast paths first: this runs for every value of every recorded row
    if kind is str:
        return value if escape or value.isascii() else utf8_text(value)
    if kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                return _pairs(value, memo, escape)
            if escape:
                k = _escape(k) if k[:1] in "_~" else k
            elif not k.isascii():
                k = utf8_text(k)
            out[k] = to_jsonable(v, memo, escape)
        return out
    if kind is list:
        return [to_jsonable(v, memo, escape) for v in value]
    if kind is float:
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if _is_message(value):  # before the ABC checks below: messages are most of what is left
        if not escape:  # the view: its strings follow utf8_text too
            return {_MSG: to_jsonable(_dump_message(value))}
        if memo is None:
            return {_MSG: _dump_message(value)}
        found = memo.get(id(value))
        if found is None:
            found = memo[id(value)] = {_MSG: _dump_message(value)}
        return found
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return to_jsonable(str.__str__(value), memo, escape)  # a (str, Enum) member's value; str() would give "E.A"
    if isinstance(value, float):
        return to_jsonable(float(value))
    if isinstance(value, Mapping):
        return to_jsonable(dict(value.items()), memo, escape)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, memo, escape) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_BYTES: base64.b64encode(bytes(value)).decode("ascii")}
    # langgraph control objects: keep their fields, not their class
    cls = type(value).__name__
    try:
        if cls == "Send":
            return {_SEND: {"node": value.node, "arg": to_jsonable(value.arg, memo, escape)}}
        if cls == "Command":
            return {
                _COMMAND: {
                    "update": to_jsonable(value.update, memo, escape),
                    "goto": to_jsonable(value.goto, memo, escape),
                    "resume": to_jsonable(value.resume, memo, escape),
                }
            }
        if _is_array(value):
            if not value.shape:  # a numpy scalar
                return to_jsonable(value.item(), memo, escape)
            return {_ARRAY: {"type": f"{type(value).__module__}.{cls}", "dtype": str(value.dtype),
                             "shape": list(value.shape), "data": to_jsonable(value.tolist(), memo, escape)}}
        if hasattr(value, "model_dump") and callable(value.model_dump):
            return to_jsonable(value.model_dump(mode="json"), memo, escape)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return to_jsonable(dataclasses.asdict(value), memo, escape)
    except RecursionError:
        raise
    except Exception:  # a model_dump or property that raises: the repr below still says what it was
        pass
    return {_OBJ: safe_repr(value)}


def _pairs(value: dict[Any, Any], memo: dict[int, Any] | None, escape: bool) -> dict[str, Any]:
    """A dict with a non-string key: JSON would turn 1 into "1" (and drop one of 1 and "1")."""
    return {_DICT: [[to_jsonable(k, memo, escape), to_jsonable(v, memo, escape)] for k, v in value.items()]}


def _is_array(value: Any) -> bool:
    return hasattr(value, "tolist") and hasattr(value, "dtype") and hasattr(value, "shape")


def safe_repr(value: Any, limit: int = 10_000) -> str:
    """`repr(value)`, or a description when its `__repr__` raises (never an exception)."""
    try:
        text = repr(value)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        text = f"<{type(value).__module__}.{type(value).__qualname__} object; repr raised {type(exc).__name__}>"
    if not isinstance(text, str):
        text = f"<{type(value).__qualname__} object>"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def finite_or_null(value: Any) -> Any:
    """NaN and infinities as null, for strict JSON readers (the CLI's --json, the viewer's API)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def _is_message(value: Any) -> bool:
    """A LangChain message? Read without importing langchain-core: if it is not loaded, no value is one
    (so a CLI that only reads a store does not pay for its import)."""
    messages = sys.modules.get("langchain_core.messages")
    return messages is not None and isinstance(value, messages.BaseMessage)


_EMPTY_DEFAULTS = ("additional_kwargs", "response_metadata", "tool_calls", "invalid_tool_calls")


def _dump_message(message: Any) -> dict[str, Any]:
    """The message's fields, without the empty ones its constructor fills in again (a third of the bytes)."""
    data = message.model_dump(mode="json", exclude_none=True)
    for key in _EMPTY_DEFAULTS:
        if key in data and not data[key]:
            del data[key]
    return data


def from_jsonable(value: Any) -> Any:
    """Rebuild messages and the marked values inside decoded JSON; every other value stays plain data.

    Never raises because of a value's shape: a tag that cannot be revived stays a dict.
    """
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, body),) = value.items()
            if key in TAGS:
                try:
                    return _revive(key, body)
                except Exception:  # foreign or older data shaped like a tag: keep it as data
                    return {key: body}
        return {_unescape(k): from_jsonable(v) for k, v in value.items()}
    return value


def _revive(tag: str, body: Any) -> Any:
    if tag == _MSG:
        return _message(body)
    if tag == _FLOAT:
        if body not in ("nan", "inf", "-inf"):
            raise ValueError(body)
        return float(body)
    if tag == _BYTES:
        return base64.b64decode(body, validate=True)
    if tag == _DICT:
        return {_hashable(from_jsonable(k)): from_jsonable(v) for k, v in body}
    if tag == _ARRAY:
        return _array(body)
    if tag == _SEND:
        from langgraph.types import Send

        if set(body) != {"node", "arg"} or not isinstance(body["node"], str):
            raise ValueError("not a Send")
        return Send(body["node"], from_jsonable(body["arg"]))
    if tag == _COMMAND:
        from langgraph.types import Command

        if not set(body) <= {"update", "goto", "resume"}:
            raise ValueError("not a Command")
        return Command(**{k: from_jsonable(v) for k, v in body.items() if v is not None})
    return {tag: body}  # __repr__, __tg_unstored__, __tg_cycle__: the marked form is the value


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _array(body: dict[str, Any]) -> Any:
    """A numpy array again (plain numeric dtypes only); anything else keeps its marked form."""
    if body.get("type") != "numpy.ndarray" or str(body.get("dtype", "O"))[:1] not in "biufcU?":
        return {_ARRAY: body}
    import numpy as np

    dtype = np.dtype(str(body["dtype"]))
    if dtype.hasobject:
        return {_ARRAY: body}
    return np.asarray(from_jsonable(body["data"]), dtype=dtype).reshape(body["shape"])


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


# ensure_ascii: a lone surrogate (what os.fsdecode gives for a non-UTF-8 file name) is kept as a
# \\udcxx escape, which SQLite can store (UTF-8 cannot hold it) and json.loads gives back exactly
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)

try:  # langchain-core's langsmith already brings orjson; encoding is most of the writer's time
    import orjson

    def _encode(data: Any) -> str:
        try:
            return orjson.dumps(data).decode()
        except TypeError as exc:  # orjson.JSONEncodeError: an int past 64 bits, a lone surrogate, depth
            if "ecursion" in str(exc):
                raise RecursionError(f"nesting deeper than {_MAX_DEPTH} levels") from None
            return _ENCODER.encode(data)

except ImportError:  # pragma: no cover - a Python where langsmith skips orjson

    def _encode(data: Any) -> str:
        if _depth_over(data, _MAX_DEPTH):
            raise RecursionError(f"nesting deeper than {_MAX_DEPTH} levels")
        return _ENCODER.encode(data)

    def _depth_over(data: Any, limit: int) -> bool:
        stack = [(data, 0)]
        while stack:
            item, depth = stack.pop()
            if depth > limit:
                return True
            if isinstance(item, dict):
                stack.extend((v, depth + 1) for v in item.values())
            elif isinstance(item, list):
                stack.extend((v, depth + 1) for v in item)
        return False


def dumps(value: Any, memo: dict[int, Any] | None = None, transform: Any = None) -> str:
    """JSON text for a value; never raises for the value's sake (see `unstored`).

    In a dict (a node's update: state key -> value) only the values that cannot be
    encoded take the fallback form; their siblings are stored as usual. `transform`
    (plain JSON value -> plain JSON value; the store's redaction) rewrites what is written.
    """
    same = _same if transform is None else transform
    try:
        return _encode(same(to_jsonable(value, memo, True)))
    except (RecursionError, ValueError, TypeError) as exc:
        if type(value) is dict and all(type(k) is str for k in value):
            return _ENCODER.encode(same({_escape(k): _part(v, memo) for k, v in value.items()}))
        return _ENCODER.encode(same(unstored(value, _reason(exc))))


def _same(data: Any) -> Any:
    return data


def _part(value: Any, memo: dict[int, Any] | None) -> Any:
    try:
        data = to_jsonable(value, memo, True)
        _encode(data)  # too deep for a JSON reader?
        return data
    except (RecursionError, ValueError, TypeError) as exc:
        return unstored(value, _reason(exc))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return f"nested deeper than JSON readers manage ({exc})"
    return f"{type(exc).__name__}: {exc}"


def unstored(value: Any, reason: str) -> dict[str, Any]:
    """The marked fallback form: the reason, and the whole value as JSON text written without recursion."""
    text = _flat_json(value)
    if f'"{_CYCLE}":true' in text:
        reason = "the value contains itself (a cycle); marked where it closes"
    return {_UNSTORED: {"reason": reason[:500], "type": f"{type(value).__module__}.{type(value).__qualname__}", "json": text}}


def _flat_json(value: Any) -> str:
    """JSON text of any nesting depth, with an explicit stack; a cycle is written as {"__tg_cycle__": true}."""
    parts: list[str] = []
    on_path: set[int] = set()
    stack: list[list[Any]] = []  # [iterator, is_mapping, id, first]

    def open_(v: Any) -> None:
        is_map = isinstance(v, Mapping)
        if is_map or isinstance(v, (list, tuple, set, frozenset)):
            if id(v) in on_path:
                parts.append(f'{{"{_CYCLE}":true}}')
                return
            on_path.add(id(v))
            parts.append("{" if is_map else "[")
            stack.append([iter(list(v.items()) if is_map else list(v)), is_map, id(v), True])
            return
        try:
            parts.append(_ENCODER.encode(to_jsonable(v, None, True)))
        except Exception:  # a leaf with a cycle or deep nesting of its own
            parts.append(_ENCODER.encode({_OBJ: safe_repr(v)}))

    open_(value)
    while stack:
        top = stack[-1]
        item = next(top[0], _END)
        if item is _END:
            parts.append("}" if top[1] else "]")
            on_path.discard(top[2])
            stack.pop()
            continue
        if not top[3]:
            parts.append(",")
        top[3] = False
        if top[1]:
            key, item = cast(tuple[Any, Any], item)
            parts.append(_ENCODER.encode(key if isinstance(key, str) else safe_repr(key)) + ":")
        open_(item)
    return "".join(parts)


_END = object()


def loads(text: str | None) -> Any:
    if text is None or text == "":
        return None
    return from_jsonable(json.loads(text))


def canonical(value: Any) -> Any:
    """JSON form with the volatile parts removed, for comparing runs.

    `add_messages` gives id-less messages random ids, and providers attach
    timing/usage metadata; neither says anything about what the agent did.
    """
    try:
        data = to_jsonable(value)
    except RecursionError as exc:
        data = unstored(value, f"RecursionError: {exc}")
    return _strip(data)


_VOLATILE = {"id", "response_metadata", "usage_metadata", "tool_call_id", "lc_attributes"}


def _strip(data: Any) -> Any:
    if isinstance(data, dict):
        if _MSG in data and len(data) == 1 and isinstance(data[_MSG], dict):
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
