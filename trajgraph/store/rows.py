"""How the trajectory dataclasses become table rows and back: JSON as TEXT, flags as 0/1.

Kept apart from the Store (base.py) so the encoding rules live in one place that every backend's
reads and writes both call: which columns hold JSON, which hold booleans, that a
decision step's action is encoded once with its update, and that a model call's
shared prompt prefix is dropped on write (`encode`) and rebuilt on read
(`resolve_prompts`). `decode` refuses anything that is not JSON text: nothing here unpickles.
"""

from __future__ import annotations

import json
from typing import Any

from trajgraph.errors import NotAStoreError
from trajgraph.store.json import MESSAGE_TAG, _encode, dumps, loads
from trajgraph.store.redact import Redactor, may_hold_secret, redact_secrets, redact_value
from trajgraph.store.text import utf8_text
from trajgraph.trajectory import ModelCall

JSON_FIELDS = {
    "runs": ("input", "output", "tags", "metadata"),
    "steps": ("update", "action"),
    "model_calls": ("messages", "response", "params", "token_ids", "logprobs"),
    "search_nodes": ("action",),
    "pairs": ("prompt", "chosen", "rejected"),
}
BOOL_FIELDS = {"steps": {"interrupted"}, "search_nodes": {"terminal", "chosen", "invalid"}}
NUMBER_FIELDS = {  # REAL/INTEGER columns: SQLite would hold text there too, which no reader can use
    "runs": ("outcome", "fork_step", "started_at", "ended_at"),
    "steps": ("seq", "lg_step", "started_at", "latency_ms", "reward"),
    "model_calls": ("seq", "step_seq", "prompt_tokens", "completion_tokens", "latency_ms", "prompt_ref", "prompt_shared"),
    "search_nodes": ("id", "parent_id", "depth", "score", "value", "visits", "outcome", "created_at"),
    "pairs": ("chosen_score", "rejected_score", "node_id", "chosen_node", "rejected_node"),
}


_BOOLS = {table: tuple(sorted(fields)) for table, fields in BOOL_FIELDS.items()}


def row_of(item: Any) -> dict[str, Any]:
    return dict(item.__dict__)  # the dataclass's fields (frozen dataclasses without slots keep them here)


TEXT_FIELDS = ("error", "observation", "action_text", "reason")  # plain text that may quote a secret


def encode(table: str, row: dict[str, Any], memo: dict[int, Any] | None = None,
           redact: Redactor | None = redact_secrets, checked: dict[int, tuple[Any, bool]] | None = None) -> dict[str, Any]:
    """A row as the store keeps it; `memo` lets rows of one batch share encoded messages, and `checked`
    (with `memo`) their redaction pre-checks.
    `redact` (trajgraph/store/redact.py) rewrites every JSON text and plain text column."""
    out = dict(row)
    if table == "model_calls" and out.get("prompt_shared") and isinstance(out.get("messages"), list):
        out["messages"] = out["messages"][out["prompt_shared"] :]  # the rest is stored with call prompt_ref
    # the default redaction works on the value (linear, no regex over JSON text); a custom one on the JSON text
    by_value = redact_value if redact is redact_secrets else None
    by_text = None if redact is redact_secrets else redact
    for f in JSON_FIELDS[table]:
        if f in out:
            value = out[f]
            if f == "action" and value is not None and value is row.get("update"):
                out[f] = out["update"]  # a decision node's action is its update: encode (and redact) it once
                continue
            if f == "tags":
                out[f] = json.dumps(list(value or ()))
                continue
            if f == "metadata" or f == "params":
                value = value or {}
            elif value is None:
                out[f] = None
                continue
            kept = _Kept()
            out[f] = text = dumps(value, memo, kept)
            if by_value is not None and _may_hold_secret(kept.data, text, checked):  # a cheap pre-check, then the walk
                out[f] = dumps(value, memo, by_value)
            elif by_text is not None:
                out[f] = by_text(text)
    if redact is not None:
        for f in TEXT_FIELDS:
            if isinstance(out.get(f), str):
                out[f] = (by_text or redact_value)(out[f])
    for f in _BOOLS.get(table, ()):
        if f in out:
            out[f] = int(bool(out[f]))
    return out


class _Kept:
    """A `dumps` transform that keeps the JSON value it encodes (and changes nothing)."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: Any = None

    def __call__(self, data: Any) -> Any:
        self.data = data
        return data


_WALK_LIMIT = 64  # keys, strings and containers (messages aside) before the pre-check scans the whole text instead


def _may_hold_secret(data: Any, text: str, checked: dict[int, tuple[Any, bool]] | None) -> bool:
    """`may_hold_secret(text)`, where `text` encodes `data`, with each message scanned once a batch.

    A message is in several rows of a batch (a step's update, the model call that made it, the next calls'
    prompts, the run's output): its pre-check is kept in `checked` (id -> (the message's JSON value, kept
    alive so the id stays its own; the result)). The rest of the value, its keys and strings, is scanned
    as a JSON list of strings: every rule of the pre-check lies within one string on ASCII text (a
    credential name is a word of a key or string), so that is the same test. A value with many items, or
    keys and strings outside ASCII or with escapes, is scanned whole as before."""
    if checked is None:
        return may_hold_secret(text)
    parts: list[str] = []
    stack = [data]
    budget = _WALK_LIMIT
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict and len(item) == 1 and MESSAGE_TAG in item:
            known = checked.get(id(item))
            if known is None:
                try:
                    known = checked[id(item)] = (item, may_hold_secret(_encode(item)))
                except (RecursionError, ValueError, TypeError):
                    return may_hold_secret(text)
            if known[1]:
                return True
            continue
        budget -= 1
        if budget < 0:
            return may_hold_secret(text)
        if kind is str:
            parts.append(item)
        elif kind is list:
            stack.extend(item)
        elif kind is dict:
            parts.extend(item)
            stack.extend(item.values())
    if not parts:
        return False
    try:
        skeleton = _encode(parts)
    except (RecursionError, ValueError, TypeError):
        return may_hold_secret(text)
    if not skeleton.isascii() or "\\u" in skeleton:
        return may_hold_secret(text)
    return may_hold_secret(skeleton)


def resolve_prompts(calls: list[ModelCall]) -> list[ModelCall]:
    """Rebuild whole prompts from shared prefixes (calls come ordered by run, then seq)."""
    whole: dict[tuple[str, int], list[Any]] = {}
    out = []
    for call in calls:
        messages = call.messages
        if call.prompt_ref is not None and call.prompt_shared and isinstance(messages, list):
            base = whole.get((call.run_id, call.prompt_ref))
            if base is not None:  # else the referenced call is missing: keep what this row holds
                messages = base[: call.prompt_shared] + messages
                call = call.replace(messages=messages)
        if isinstance(messages, list):
            whole[(call.run_id, call.seq)] = messages
        out.append(call)
    return out


UNREADABLE = "__tg_unreadable__"


def decode(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `encode`. A column that is not JSON text (a BLOB, say a pickle, or broken
    text) is never unpickled or evaluated: it reads as `{"__tg_unreadable__": reason}`, so one
    damaged row cannot make a whole listing fail."""
    out = dict(row)
    for f in NUMBER_FIELDS[table]:
        value = out.get(f)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            where = next((f" {k} {out[k]!r}" for k in ("run_id", "id") if isinstance(out.get(k), str)), "")
            raise NotAStoreError(f"not a valid store: {table}{where}: {f} holds {type(value).__name__} "
                                 f"{str(value)[:40]!r} where a number belongs; restore the file from a copy")
    for f in JSON_FIELDS[table]:
        if f in out:
            value = out[f]
            if value is not None and not isinstance(value, str):  # a BLOB or number where JSON text belongs
                out[f] = {UNREADABLE: f"{table}.{f} holds {type(value).__name__}, not JSON text; never unpickled"}
                continue
            if f == "action" and value is not None and value == row.get("update"):
                # a decision step's action is its update (one object when recorded): decoded once, shared again,
                # so reading is cheaper and writing the step elsewhere encodes (and redacts) it once
                out[f] = out["update"]
                continue
            try:
                out[f] = loads(value)
            except (ValueError, RecursionError) as exc:
                out[f] = {UNREADABLE: f"{table}.{f} is not valid JSON ({type(exc).__name__}); never evaluated"}
    for f in BOOL_FIELDS.get(table, set()) & out.keys():
        out[f] = bool(out[f])
    return out


def unreadable(*values: Any) -> str | None:
    """The reason of the first value that `decode` could not read, if any."""
    for value in values:
        if isinstance(value, dict) and len(value) == 1 and UNREADABLE in value:
            return str(value[UNREADABLE])
    return None


def escape_text(item: Any) -> Any:
    """`item` with every plain-text field that UTF-8 cannot encode backslash-escaped (a marked change:
    the text then shows the \\udcxx escape); `item` itself when there is none. JSON fields are safe already."""
    if isinstance(item, tuple):  # a run update: (run id, fields)
        fields = {k: _safe_text(v) for k, v in item[1].items()}
        return item if all(fields[k] is item[1][k] for k in fields) else (item[0], fields)
    changed = {k: _safe_text(v) for k, v in item.__dict__.items() if isinstance(v, (str, tuple))}
    changed = {k: v for k, v in changed.items() if v is not item.__dict__[k]}
    return item.replace(**changed) if changed else item


def _safe_text(value: Any) -> Any:
    if isinstance(value, tuple):
        texts = tuple(_safe_text(v) for v in value)
        return value if all(a is b for a, b in zip(texts, value)) else texts
    return utf8_text(value) if isinstance(value, str) else value


__all__ = ["UNREADABLE", "unreadable", "escape_text", "JSON_FIELDS", "BOOL_FIELDS", "row_of", "encode", "decode", "resolve_prompts"]
