"""The trajectory data model: runs, steps, model calls, search nodes, pairs.

Plain frozen dataclasses with JSON round-trips (`to_dict` / `from_dict`), so a
trajectory can leave the store as a file and come back without pickle. The
`SCHEMA_VERSION` is shared with the store: both change together.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

SCHEMA_VERSION = 6  # v2: steps.task_id; v3: model_calls.prompt_ref/prompt_shared; v4: full-text search indexes;
# v5: SQLite's index catches up when searched, not on every insert; v6: fewer indexes on the write path

RunStatus = Literal["running", "succeeded", "failed", "interrupted", "unfinished"]  # unfinished: a search that ended without a finished answer
RunKind = Literal["record", "replay", "fork", "search", "rollout", "bench"]

T = TypeVar("T")


def new_id() -> str:
    """Unique run id that sorts by creation minute; random from the 8th character on,
    so the 12-character prefixes the CLI accepts differ even for runs started together
    (a millisecond clock prefix made same-moment runs share them)."""
    return f"{int(time.time() // 60):07x}{uuid.uuid4().hex[:25]}"


class _Json:
    """JSON round-trip shared by every record type."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class Run(_Json):
    """One execution of a graph: a recorded invoke, a search, a fork or a rollout."""

    id: str
    graph: str = ""
    graph_path: str | None = None  # "module:attr" when known, so the CLI can reload it
    kind: str = "record"
    status: str = "running"
    input: Any = None
    output: Any = None
    outcome: float | None = None  # final task/env reward, when known
    task: str | None = None  # task identifier: splits train/test and pairs runs of one task
    parent_id: str | None = None  # search run for a rollout, source run for a fork
    fork_step: int | None = None
    thread_id: str | None = None  # LangGraph thread, so a resumed interrupt continues the run
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None

    @property
    def latency_s(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


@dataclass(frozen=True)
class Step(_Json):
    """One node execution. `update` is what the node returned, never the whole state."""

    run_id: str
    seq: int  # order within the run, from 0
    node: str
    lg_step: int | None = None  # LangGraph superstep
    path: str = ""  # LangGraph task path, distinguishes parallel `Send` tasks
    namespace: str = ""  # checkpoint namespace: "" at the top, "sub:<id>" inside subgraphs
    task_id: str = ""  # LangGraph task id; a subgraph step's namespace names its parent's task id
    update: Any = None
    action: Any = None  # set when the node is a decision node
    started_at: float = 0.0
    latency_ms: float = 0.0
    error: str | None = None
    reward: float | None = None
    interrupted: bool = False


@dataclass(frozen=True)
class ModelCall(_Json):
    """One chat-model call made while a step ran."""

    run_id: str
    seq: int
    step_seq: int | None = None
    model: str = ""
    messages: Any = None  # the whole list of messages in
    response: Any = None  # the message out, tool calls included
    params: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float = 0.0
    token_ids: list[int] | None = None  # when the server returns them
    logprobs: list[float | None] | None = None  # None where the server gave no number for a token
    error: str | None = None
    # A conversation's prompt grows by a message or two per call; the store keeps
    # each message once: this call's first `prompt_shared` messages are those of
    # call `prompt_ref` (same run), and only the rest is written again.
    prompt_ref: int | None = None
    prompt_shared: int = 0


@dataclass(frozen=True)
class SearchNode(_Json):
    """A node of an optimizer's search tree: a decision point reached by an action."""

    run_id: str
    id: int
    parent_id: int | None = None
    depth: int = 0
    action: Any = None
    action_text: str = ""
    observation: str = ""  # what the environment answered after the action
    score: float | None = None  # reward model / judge score
    value: float | None = None  # backed-up value (MCTS mean, RRO Monte Carlo value)
    visits: int = 0
    outcome: float | None = None  # final reward when terminal
    terminal: bool = False
    chosen: bool = False
    invalid: bool = False
    reason: str = ""  # why the optimizer chose or dropped it
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class PreferencePair(_Json):
    """A step-level (or trajectory-level) preference: same prefix, chosen vs rejected."""

    run_id: str
    source: str  # "rro", "mcts", "best_of_n", "trajectory"
    prompt: Any = None  # the shared prefix (messages or text)
    chosen: Any = None
    rejected: Any = None
    chosen_score: float | None = None
    rejected_score: float | None = None
    node_id: int | None = None  # decision point in search_nodes
    chosen_node: int | None = None
    rejected_node: int | None = None
    task: str | None = None


@dataclass(frozen=True)
class Trajectory(_Json):
    """A run with its steps and model calls, as one JSON-serializable value."""

    run: Run
    steps: tuple[Step, ...] = ()
    model_calls: tuple[ModelCall, ...] = ()
    version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run": self.run.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "model_calls": [c.to_dict() for c in self.model_calls],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        version = int(data.get("version", 0))
        if version > SCHEMA_VERSION:
            from trajgraph.errors import SchemaTooNewError

            raise SchemaTooNewError(
                f"trajectory has version {version}, newer than this trajgraph ({SCHEMA_VERSION}); upgrade trajgraph"
            )
        run = dict(data["run"])
        run["tags"] = tuple(run.get("tags") or ())
        return cls(
            run=Run.from_dict(run),
            steps=tuple(Step.from_dict(s) for s in data.get("steps", ())),
            model_calls=tuple(ModelCall.from_dict(c) for c in data.get("model_calls", ())),
            version=version,
        )

    @property
    def actions(self) -> list[Any]:
        return [s.action for s in self.steps if s.action is not None]


__all__ = [
    "SCHEMA_VERSION",
    "Run",
    "Step",
    "ModelCall",
    "SearchNode",
    "PreferencePair",
    "Trajectory",
    "new_id",
]
