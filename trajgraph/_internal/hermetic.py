"""Offline defaults for trajgraph's own entry points, and checkpoint serializers that never run code.

`import trajgraph` changes nothing in the process: the environment defaults in
`hermetic()` are applied by trajgraph's own entry points only (the `trajgraph`
command, the test kit `trajgraph.testing`, the test suite), and model loading
passes `local_files_only=True` itself. A user's program keeps its own settings.

`strict_serde()` is the serializer for every checkpointer trajgraph creates:
LangGraph's msgpack serializer imports and calls any `module.name` a
checkpoint names unless it is strict, and `LANGGRAPH_STRICT_MSGPACK` is read
once, when LangGraph is first imported, so setting it later (after the user
imported LangGraph) does nothing. The allowlist is passed explicitly instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import typing
from typing import Any


def hermetic() -> None:
    """For trajgraph's entry points: litellm fetches a price list at import unless told not to; HF must not download."""
    litellm_offline()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # LangGraph's msgpack serializer revives arbitrary types unless strict (for checkpointers
    # trajgraph does not create; its own get strict_serde() whatever this says).
    os.environ.setdefault("LANGGRAPH_STRICT_MSGPACK", "true")
    # torch's spinning OpenMP threads slow small models 10x on a shared 2-core box;
    # only takes effect if set before torch is first imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def litellm_offline() -> None:
    """Just before litellm is first imported (it fetches a model price list at import otherwise)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


_LITELLM: Any = None


async def alitellm() -> Any:
    """litellm, imported off the event loop the first time (its import reads hundreds of files and
    a .env: seconds during which a server's loop would answer nothing), offline as `hermetic` sets it."""
    global _LITELLM
    if _LITELLM is None:
        litellm_offline()
        _LITELLM = await asyncio.to_thread(importlib.import_module, "litellm")
    return _LITELLM


def strict_serde(graph: Any = None) -> Any:
    """A JsonPlusSerializer that revives only LangGraph's safe types (messages, Send, datetimes, ...)
    plus the classes named in `graph`'s state schemas; anything else comes back as plain data.
    Strict whatever LANGGRAPH_STRICT_MSGPACK said when LangGraph was imported."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    allowed = sorted({(t.__module__, t.__qualname__) for t in _schema_classes(graph)})
    return JsonPlusSerializer(allowed_msgpack_modules=allowed or None, allowed_json_modules=None)


def memory_checkpointer(graph: Any = None) -> Any:
    """An InMemorySaver with `strict_serde(graph)`: what trajgraph uses where it needs a checkpointer."""
    from langgraph.checkpoint.memory import InMemorySaver

    return InMemorySaver(serde=strict_serde(graph))


def _schema_classes(graph: Any) -> set[type]:
    """User classes reachable from a compiled graph's state, input, output and context schemas."""
    builder = getattr(graph, "builder", None)
    roots = [getattr(builder, name, None) for name in ("state_schema", "input_schema", "output_schema", "context_schema")]
    found: set[type] = set()
    stack: list[Any] = [r for r in roots if r is not None]
    seen: set[int] = set()
    while stack:
        hint = stack.pop()
        if id(hint) in seen:
            continue
        seen.add(id(hint))
        stack.extend(typing.get_args(hint))
        if not isinstance(hint, type) or hint.__module__ == "builtins":
            continue
        if typing.is_typeddict(hint) or dataclasses.is_dataclass(hint) or hasattr(hint, "model_fields"):
            if not typing.is_typeddict(hint):
                found.add(hint)
            try:
                stack.extend(typing.get_type_hints(hint, include_extras=True).values())
            except Exception:  # a forward reference that does not resolve: its fields stay unlisted
                pass
        elif hint.__module__.split(".")[0] not in ("typing", "collections", "langchain_core", "langgraph"):
            found.add(hint)
    return found
