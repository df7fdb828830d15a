"""Environment-loop agent graphs: policy -> env -> (policy | END), with an optional reset.

The builder is the shape of `trajgraph.testing.tiny_env.env_loop_graph` (same
EnvState keys, decision node "policy"), plus two things real environments need:

- a `reset` node at START, for environments that live outside the graph state
  (TextWorld): every fresh run puts the engine back at the start, so invoking the
  same graph twice, or a search's root, always begins from the task's first state;
- a state schema that extends EnvState with adapter keys (e.g. the game's
  current winning commands), since LangGraph only keeps keys its schema declares.

The module also exposes ready-made graphs for `langgraph dev` (see langgraph.json):
they play with the task's oracle policy, so Studio shows a full episode offline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph

from trajgraph.testing.tiny_env import EnvState

Node = Callable[[dict[str, Any]], dict[str, Any]]


def _route(state: dict[str, Any]) -> str:
    return END if state.get("done") else "policy"


def env_loop(
    env_node: Node,
    policy_node: Node,
    *,
    reset_node: Node | None = None,
    state_schema: type = EnvState,
    name: str = "env_loop",
) -> Any:
    """Compiled env-loop graph (no checkpointer); decision node 'policy'.

    With `reset_node`: START -> reset -> (policy | END). Without: START -> (policy | END).
    """
    g = StateGraph(state_schema)
    g.add_node("policy", policy_node)
    g.add_node("env", env_node)
    if reset_node is not None:
        g.add_node("reset", reset_node)
        g.add_edge(START, "reset")
        g.add_conditional_edges("reset", _route, ["policy", END])
    else:
        g.add_conditional_edges(START, _route, ["policy", END])
    g.add_edge("policy", "env")
    g.add_conditional_edges("env", _route, ["policy", END])
    return g.compile(name=name)


def oracle_policy(oracle: Callable[[dict], str]) -> Node:
    """A policy node that always plays the oracle's action."""

    def policy(state: dict[str, Any]) -> dict[str, Any]:
        return {"action": oracle(state)}

    return policy


# -- ready-made graphs for `langgraph dev` ---------------------------------------------


def _configurable(config: Any) -> dict[str, Any]:
    return dict((config or {}).get("configurable") or {})


def frozenlake_graph(config: Any = None) -> Any:
    """FrozenLake (configurable: size=4|8, seed=None|int) played by value iteration.

    Invoke it with the task input, e.g. `trajgraph.adapters.gym_toytext.frozenlake_task(4).input`.
    """
    from trajgraph.adapters.gym_toytext import frozenlake_task

    cfg = _configurable(config)
    task = frozenlake_task(int(cfg.get("size", 4)), seed=cfg.get("seed"))
    assert task.oracle is not None
    return task.make_graph(oracle_policy(task.oracle))[0]


def cliffwalking_graph(config: Any = None) -> Any:
    """CliffWalking from the standard start, played by value iteration."""
    from trajgraph.adapters.gym_toytext import cliffwalking_task

    task = cliffwalking_task()
    assert task.oracle is not None
    return task.make_graph(oracle_policy(task.oracle))[0]


def textworld_graph(config: Any = None) -> Any:
    """A generated tw-simple game (configurable: seed, default 1) played by its walkthrough.

    The reset node starts the game, so invoke it with `{"task": "", "history": []}` or the task input.
    """
    from trajgraph.adapters.textworld_env import textworld_task

    task = textworld_task(seed=int(_configurable(config).get("seed", 1)))
    assert task.oracle is not None
    return task.make_graph(oracle_policy(task.oracle))[0]


__all__ = ["env_loop", "oracle_policy", "frozenlake_graph", "cliffwalking_graph", "textworld_graph"]
