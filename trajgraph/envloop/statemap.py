"""One mapping from a user's decision state to what a learned policy reads.

A policy trained by `trajgraph.learn` reads four things at a decision: the task
(objective text), the current observation, the admissible actions and the
history of (action, observation) turns; the decision node writes one action.
`StateMap` says under which keys a user's graph keeps them and how its history
grows, and it checks what it reads: a missing or mis-shaped key is one
`ConfigError` naming it. The default is the env-loop convention (`EnvState`).

History shapes read (anything else is refused, naming the key):

- a list of turns `{"action": str, "observation": str}` (observation optional);
- a list of action strings (adapted: each is a turn with an empty observation);
- a list of `[action, observation]` pairs.

`history_reducer` says how a node update changes the history, as the graph's
state schema does: "add" (`Annotated[list, operator.add]`: an update holds the
new turns) or "replace" (a plain list: an update holds the whole history).
Reading an "add" history whose update repeats the whole history so far is
refused, since that is a "replace" graph misread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trajgraph.errors import ConfigError

REDUCERS = ("add", "replace")


@dataclass(frozen=True)
class StateMap:
    """Where a user's state keeps the task, observation, admissible actions and history; see module docstring.

    task=None reads "objective", else "task" (the env-loop convention)."""

    task: str | None = None
    observation: str = "observation"
    actions: str = "actions"
    history: str = "history"
    action: str = "action"  # the key the decision node writes its choice under
    history_reducer: str = "add"

    def __post_init__(self) -> None:
        for name in ("observation", "actions", "history", "action"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"StateMap.{name} must be a non-empty key name, got {getattr(self, name)!r}")
        if self.task is not None and (not isinstance(self.task, str) or not self.task):
            raise ConfigError(f"StateMap.task must be a key name or None, got {self.task!r}")
        if self.history_reducer not in REDUCERS:
            raise ConfigError(f"StateMap.history_reducer must be one of {', '.join(REDUCERS)}, got {self.history_reducer!r}")

    @property
    def is_default(self) -> bool:
        return self == StateMap()

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "observation": self.observation, "actions": self.actions, "history": self.history,
                "action": self.action, "history_reducer": self.history_reducer}

    @classmethod
    def from_dict(cls, data: Any) -> StateMap:
        if data is None:
            return cls()
        if isinstance(data, StateMap):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"state map must be a StateMap or a dict of keys, got {type(data).__name__}")
        unknown = set(data) - set(cls().as_dict())
        if unknown:
            raise ConfigError(f"state map has unknown field(s) {sorted(unknown)}; known: {sorted(cls().as_dict())}")
        return cls(**dict(data))

    # -- reading ----------------------------------------------------------------------

    def task_text(self, state: Mapping[str, Any]) -> str:
        if self.task is not None:
            if self.task not in state:
                raise ConfigError(f"decision state has no {self.task!r} (the task); its keys are {sorted(map(str, state))[:20]}")
            return _text(state[self.task], self.task)
        value = state.get("objective") or state.get("task")
        if value is None:
            raise ConfigError(f"decision state has neither 'objective' nor 'task'; its keys are {sorted(map(str, state))[:20]}: "
                              "pass StateMap(task=...) naming the key of the objective, or let a reset node write it")
        return _text(value, "objective" if state.get("objective") else "task")

    def actions_of(self, state: Mapping[str, Any]) -> list[str]:
        if self.actions not in state:
            raise ConfigError(f"decision state has no {self.actions!r} (the admissible actions); its keys are {sorted(map(str, state))[:20]}")
        value = state[self.actions]
        if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
            shown = type(value).__name__ if not isinstance(value, (list, tuple)) else f"a list holding {type(next(a for a in value if not isinstance(a, str))).__name__}"
            raise ConfigError(f"decision state key {self.actions!r} must be a list of action strings, got {shown}")
        return list(value)

    def history_of(self, state: Mapping[str, Any]) -> list[dict[str, str]]:
        value = state.get(self.history)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"decision state key {self.history!r} must be a list of turns, got {type(value).__name__}")
        return [_turn(item, self.history) for item in value]

    def view(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The policy's view of a decision state: task, observation, actions, history turns (checked)."""
        if not isinstance(state, Mapping):
            raise ConfigError(f"a decision state must be a mapping of keys, got {type(state).__name__}")
        observation = state.get(self.observation)
        return {"task": self.task_text(state), "observation": "" if observation is None else _text(observation, self.observation),
                "actions": self.actions_of(state), "history": self.history_of(state)}

    def action_of(self, update: Any) -> str | None:
        """The action a decision node's update chose, or None when it holds no such key."""
        if isinstance(update, Mapping) and isinstance(update.get(self.action), str):
            return str(update[self.action])
        return None

    def update_of(self, action: str) -> dict[str, Any]:
        """The decision node's update for `action`, under the user's key."""
        return {self.action: action}

    # -- replay -----------------------------------------------------------------------

    def apply(self, state: dict[str, Any], update: Any) -> None:
        """Merge one node update into `state` as the graph did (history by `history_reducer`; other keys overwrite)."""
        if not isinstance(update, Mapping):
            return
        for key, value in update.items():
            if key == self.history and self.history_reducer == "add":
                if value is None:
                    continue
                if not isinstance(value, (list, tuple)):
                    raise ConfigError(f"an update wrote {self.history!r} as {type(value).__name__}; with history_reducer='add' "
                                      "it must be a list of new turns")
                old = list(state.get(self.history) or [])
                if old and len(value) > len(old) and list(value[: len(old)]) == old:
                    raise ConfigError(f"an update wrote the whole {self.history!r} so far plus new turns: the graph replaces its "
                                      "history each step; pass StateMap(history_reducer='replace')")
                state[self.history] = old + list(value)
            else:
                state[key] = value


def _text(value: Any, key: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"decision state key {key!r} must be text, got {type(value).__name__}")


def _turn(item: Any, key: str) -> dict[str, str]:
    if isinstance(item, str):
        return {"action": item, "observation": ""}  # a list of action strings, adapted
    if isinstance(item, Mapping) and isinstance(item.get("action"), str):
        obs = item.get("observation")
        return {"action": item["action"], "observation": "" if obs is None else str(obs)}
    if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
        return {"action": item[0], "observation": "" if item[1] is None else str(item[1])}
    raise ConfigError(f"decision state key {key!r} must be a list of turns ({{'action', 'observation'}} dicts, action strings "
                      f"or [action, observation] pairs); an item is {type(item).__name__}: {str(item)[:60]!r}")


__all__ = ["StateMap", "REDUCERS"]
