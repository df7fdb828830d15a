"""Input checks for the shipped graphs: a missing or wrong key gets one message naming the expected input.

LangGraph passes whatever a caller (or LangGraph Server, or Studio's form) sends
straight to the graph's nodes, so an empty input to an environment loop used to end
in `KeyError: 'pos'` deep inside a node. `expect_input(graph, spec)` returns a copy of
the compiled graph whose entry (`__start__`) checks the input against `spec` first
and raises `InputError` naming the graph, the problem and the input it expects.
The check runs inside the graph, so it holds for `invoke`, `stream`, the server's
`/runs` endpoints, and for the graph used inside `tg.record` or `tg.optimize`.
A resume (`None` or a `Command`) is not an input and passes through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import Command

from trajgraph.errors import InputError

Types = type | tuple[type, ...]


@dataclass(frozen=True)
class ExpectedInput:
    """The input a graph takes: required keys and their types, other keys it accepts, an example.

    `check(value) -> problem or None` adds a rule the types cannot say (a range).
    `hint` replaces the example in the message when the example is too long to read.
    """

    graph: str
    required: Mapping[str, Types] = field(default_factory=dict)
    optional: Mapping[str, Types] = field(default_factory=dict)
    example: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Mapping[str, Any]], str | None] | None = None
    hint: str | None = None

    def expected(self) -> str:
        if self.hint is not None:
            return self.hint
        shown = {k: self.example[k] for k in self.required if k in self.example} if self.required else dict(self.example)
        text = f"input like {json.dumps(shown, default=str)}"
        others = [k for k in self.example if k not in shown]
        return text + (f" (also accepted: {', '.join(others)})" if others else "")

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value`, or None when the graph can run on it."""
        if value is None or isinstance(value, Command):
            return None
        if not isinstance(value, Mapping):
            return f"the input must be a JSON object, got {type(value).__name__}"
        missing = [k for k in self.required if k not in value]
        if missing:
            return f"missing key {', '.join(repr(k) for k in missing)}"
        known = {*self.required, *self.optional}
        unknown = [k for k in value if k not in known]
        if unknown:
            return f"unknown key {', '.join(repr(k) for k in unknown)} (keys: {', '.join(sorted(known)) or 'none'})"
        for key, types in {**self.optional, **self.required}.items():
            given = value.get(key)
            if (given is not None or key in self.required) and key in value and not isinstance(given, types):
                return f"{key!r} must be {_names(types)}, got {type(given).__name__}"
        return self.check(value) if self.check is not None else None

    def validate(self, value: Any) -> None:
        problem = self.problem(value)
        if problem is not None:
            raise InputError(f"{self.graph}: {problem}; it expects {self.expected()}")


def _names(types: Types) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))


class _CheckedStart(Runnable[Any, Any]):
    """The graph's `__start__` runnable, preceded by the input check."""

    def __init__(self, spec: ExpectedInput, bound: Runnable[Any, Any]) -> None:
        self.spec = spec
        self.bound = bound

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self.spec.validate(input)
        return self.bound.invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        self.spec.validate(input)
        return await self.bound.ainvoke(input, config, **kwargs)


def expect_input(graph: Pregel, spec: ExpectedInput) -> Pregel:
    """A copy of the compiled `graph` that checks its input against `spec` before anything runs."""
    start = graph.nodes["__start__"]
    bound = start.bound.bound if isinstance(start.bound, _CheckedStart) else start.bound
    # the node swap trajgraph's recording uses too (edges, routing and policies stay LangGraph's own)
    nodes = {**graph.nodes, "__start__": start.copy({"bound": _CheckedStart(spec, bound)})}
    return graph.copy({"nodes": nodes})


__all__ = ["ExpectedInput", "expect_input"]
