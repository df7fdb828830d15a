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
import types as pytypes
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.pregel import Pregel
from langgraph.types import Command

from trajgraph.errors import InputError

Types = Any  # a type, a tuple of types, or a typing annotation (list[str], float | None, Annotated[...])


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
            if (given is not None or key in self.required) and key in value and not conforms(given, types):
                return f"{key!r} must be {_names(types)}, got {_shape(given)}"
        return self.check(value) if self.check is not None else None

    def validate(self, value: Any) -> None:
        problem = self.problem(value)
        if problem is not None:
            raise InputError(f"{self.graph}: {problem}; it expects {self.expected()}")


def conforms(value: Any, annotation: Types) -> bool:
    """Whether `value` (decoded JSON, or what a Python caller passed) has the declared type.

    Understands what graph state schemas declare: classes, unions (`float | None`),
    `list[X]`, `dict[K, V]`, `tuple[...]`, `Literal`, `Annotated[T, reducer]`, TypedDicts
    and `Any`. A bool is not a number (`True` is no position), though an int is a float.
    """
    if annotation is Any or annotation is object:
        return True
    if isinstance(annotation, tuple):
        return any(conforms(value, a) for a in annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return conforms(value, args[0])
    if origin is Union or origin is pytypes.UnionType:
        return any(conforms(value, a) for a in args)
    if origin is Literal:
        return value in args and type(value) in {type(a) for a in args}
    if annotation is None or annotation is type(None):
        return value is None
    if origin in (list, typing.List, set, frozenset):  # noqa: UP006
        return isinstance(value, list) and (not args or all(conforms(v, args[0]) for v in value))
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(v, args[0]) for v in value)
        return not args or (len(args) == len(value) and all(conforms(v, a) for v, a in zip(value, args)))
    if origin in (dict, Mapping) or origin is typing.Dict:  # noqa: UP006
        return isinstance(value, Mapping) and (not args or all(conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items()))
    if isinstance(annotation, type) and typing.is_typeddict(annotation):
        if not isinstance(value, Mapping):
            return False
        hints = get_type_hints(annotation, include_extras=True)
        return all(k in hints and conforms(v, hints[k]) for k, v in value.items())
    if not isinstance(annotation, type):
        return True  # a form we do not read (a TypeVar, a Protocol): the node decides
    if annotation in (int, float) and isinstance(value, bool):
        return False
    if annotation is float:
        return isinstance(value, (int, float))
    return isinstance(value, annotation)


def state_types(schema: type, *, but: tuple[str, ...] = ()) -> dict[str, Types]:
    """The key -> type declarations of a state schema (a TypedDict), for `ExpectedInput`."""
    return {k: v for k, v in get_type_hints(schema, include_extras=True).items() if k not in but}


def messages_problem(messages: Any) -> str | None:
    """What LangChain cannot read as chat messages ('messages' of a ReAct agent's input), or None."""
    from langchain_core.messages import convert_to_messages

    if isinstance(messages, str):
        return None
    for i, message in enumerate(messages):
        try:
            convert_to_messages([message])
        except Exception as exc:  # NotImplementedError, ValueError, pydantic's ValidationError: one line for a person
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"'messages'[{i}] is not a chat message ({first[:120]}); give {{\"role\": \"user\", \"content\": \"...\"}}"
    return None


def _names(types: Types) -> str:
    if isinstance(types, tuple):
        return " or ".join(_names(t) for t in types)
    if get_origin(types) is Annotated:
        return _names(get_args(types)[0])
    if isinstance(types, type) and not get_args(types):
        return types.__name__
    return str(types).replace("typing.", "")


def _shape(value: Any) -> str:
    if isinstance(value, list) and value:
        return f"list with a {type(value[0]).__name__}" if len({type(v) for v in value}) == 1 else "list of mixed items"
    return f"{type(value).__name__} {json.dumps(value, default=str)[:40]}" if isinstance(value, (bool, str)) else type(value).__name__


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


__all__ = ["ExpectedInput", "expect_input", "conforms", "state_types", "messages_problem"]
