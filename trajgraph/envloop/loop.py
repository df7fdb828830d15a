"""Environment-loop agent graphs: policy -> env -> (policy | END), with an optional reset.

`EnvState` is the state every environment loop in trajgraph shares, and
`env_loop_graph` is its one builder (the test kit's tiny environments, the toy-text,
TextWorld and chain tasks, and the ready-made graphs below all use it). Keys:
task, observation, actions (admissible), action (written by the decision node
"policy"), history, score, reward (final, when done), done.

Two things real environments need beyond the plain loop:

- a `reset` node at START, for environments that live outside the graph state
  (TextWorld): every fresh run puts the engine back at the start, so invoking the
  same graph twice, or a search's root, always begins from the task's first state;
- a state schema that extends EnvState with adapter keys (e.g. the game's
  current winning commands), since LangGraph only keeps keys its schema declares.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict, cast

from langgraph.graph import END, START, StateGraph

Node = Callable[..., dict[str, Any]]  # (state) or, as LangGraph allows, (state, config)


class EnvState(TypedDict, total=False):
    """The state of every environment-loop graph in trajgraph."""

    task: str
    observation: str
    actions: list[str]  # admissible actions at this point
    action: str | None  # written by the decision node
    history: Annotated[list, operator.add]  # [{"action", "observation", "reward"}]
    score: float  # running score
    reward: float | None  # final reward, set when done
    done: bool
    pos: int


def _route(state: dict[str, Any]) -> str:
    return END if state.get("done") else "policy"


def env_loop_graph(
    env_node: Node,
    policy_node: Node,
    name: str = "env_loop",
    *,
    reset_node: Node | None = None,
    state_schema: type = EnvState,
) -> StateGraph:
    """The env-loop builder (not compiled); decision node 'policy'.

    With `reset_node`: START -> reset -> (policy | END). Without: START -> (policy | END).
    `name` is the compiled graph's name in `env_loop`; the builder itself has none.
    """
    del name  # a StateGraph has no name; kept so env_loop_graph(env, policy, "name") reads as before
    g: StateGraph[Any, Any, Any, Any] = StateGraph(state_schema)
    g.add_node("policy", cast(Any, policy_node))  # a plain (state) -> update function; its state type is the schema's
    g.add_node("env", cast(Any, env_node))
    if reset_node is not None:
        g.add_node("reset", cast(Any, reset_node))
        g.add_edge(START, "reset")
        g.add_conditional_edges("reset", _route, ["policy", END])
    else:
        g.add_conditional_edges(START, _route, ["policy", END])
    g.add_edge("policy", "env")
    g.add_conditional_edges("env", _route, ["policy", END])
    return g


def env_loop(
    env_node: Node,
    policy_node: Node,
    *,
    reset_node: Node | None = None,
    state_schema: type = EnvState,
    name: str = "env_loop",
) -> Any:
    """Compiled env-loop graph (no checkpointer); decision node 'policy'."""
    return env_loop_graph(env_node, policy_node, reset_node=reset_node, state_schema=state_schema).compile(name=name)


def oracle_policy(oracle: Callable[[dict], str]) -> Node:
    """A policy node that always plays the oracle's action."""

    def policy(state: dict[str, Any]) -> dict[str, Any]:
        return {"action": oracle(state)}

    return policy
