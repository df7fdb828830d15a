"""The one rule for text leaving trajgraph: UTF-8, with each lone surrogate as its backslash escape.

The store keeps a lone surrogate exactly (`"caf\\udce9"`, what `os.fsdecode` gives
for a non-UTF-8 file name): JSON columns as the JSON escape, plain-text columns
(graph names, tags, errors) as the six characters `\\udce9`. UTF-8 cannot hold a
lone surrogate, so every writer of text (dataset files, `--json`, the viewer's
API, training text and tokenizers, spans, the terminal) writes that same
backslash escape: `utf8_text` for one string, `utf8_data` for JSON-shaped data.
The JSON view of stored values (`to_jsonable` without `escape`) applies it to
every string, so most readers get it without asking. Python readers of the store
(`Store.steps`, replay) still get the exact value.
"""

from __future__ import annotations

from typing import Any


def utf8_text(text: str) -> str:
    """`text` as UTF-8 can hold it: each lone surrogate becomes its backslash escape (`\\udce9`).

    The one rule for text leaving trajgraph (see the module docstring); text without
    a lone surrogate comes back unchanged (the same object).
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def utf8_data(value: Any) -> Any:
    """`utf8_text` applied to every string (keys too) inside plain JSON-shaped data."""
    if isinstance(value, str):
        return utf8_text(value)
    if isinstance(value, dict):
        return {utf8_data(k): utf8_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [utf8_data(v) for v in value]
    return value


__all__ = ["utf8_text", "utf8_data"]
