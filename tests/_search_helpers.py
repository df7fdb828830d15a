"""Small graphs and scripted policies shared by the search tests."""

from __future__ import annotations

import itertools
import operator
from typing import Annotated, Any, TypedDict, cast

from langgraph.graph import END, START, StateGraph


class LineState(TypedDict, total=False):
    task: str
    pos: int
    observation: str
    actions: list[str]
    action: str | None
    history: Annotated[list, operator.add]
    reward: float | None
    done: bool


def line_graph(goal: int = 3, max_turns: int = 6) -> Any:
    """Walk a line: forward +1, back -1, wait 0. Success at `goal`; the turn count
    lives in `history` so equal positions are equivalent states."""

    def policy(state: LineState) -> dict[str, Any]:
        return {"action": "forward"}

    def env(state: LineState) -> dict[str, Any]:
        pos = max(0, state.get("pos", 0) + {"forward": 1, "back": -1}.get(state["action"] or "", 0))
        turns = len(state.get("history") or []) + 1
        done = pos >= goal or turns >= max_turns
        return {"pos": pos, "observation": f"at {pos}", "done": done, "reward": (1.0 if pos >= goal else 0.0) if done else None,
                "actions": ["forward", "back", "wait"], "history": [{"action": state["action"], "observation": f"at {pos}"}]}

    return policy_env_graph(LineState, policy, env, name="line")


def policy_env_graph(state_type: type, policy: Any, env: Any, name: str | None = None) -> Any:
    """policy -> env -> policy ... until the state says `done`: the env-loop convention as a plain
    two-node graph, the environment a (state) -> update function inside it."""
    g: StateGraph[Any] = StateGraph(state_type)
    g.add_node("policy", policy)
    g.add_node("env", cast(Any, env))
    g.add_edge(START, "policy")
    g.add_edge("policy", "env")
    g.add_conditional_edges("env", lambda s: END if s.get("done") else "policy", ["policy", END])
    return g.compile(name=name)


def line_start() -> LineState:
    return {"task": "reach 3", "pos": 0, "observation": "at 0", "actions": ["forward", "back", "wait"], "history": [], "done": False}


class SequencePolicy:
    """Proposes actions from a per-position script, in order, cycling."""

    def __init__(self, script: dict[int, list[str]], key: str = "pos") -> None:
        self.cursors = {k: itertools.cycle(v) for k, v in script.items()}
        self.key = key
        self.calls = 0
        self.name = "sequence"

    async def propose(self, state: dict[str, Any], k: int) -> list[Any]:
        self.calls += k
        cursor = self.cursors[state.get(self.key, 0)]
        return [{"action": next(cursor)} for _ in range(k)]
