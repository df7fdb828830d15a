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

The module also exposes ready-made graphs for `langgraph dev` (see langgraph.json):
they play with the task's oracle policy, so Studio shows a full episode offline,
and they check their input first (`trajgraph.graphs._inputs`): an empty or
malformed input gets one message naming the expected input, not a KeyError.
"""

from __future__ import annotations

import asyncio
import functools
import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from trajgraph.graphs._inputs import ExpectedInput, expect_input, state_types

Node = Callable[[Any], dict[str, Any]]


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


# -- ready-made graphs for `langgraph dev` ---------------------------------------------


def _configurable(config: Any) -> dict[str, Any]:
    return dict((config or {}).get("configurable") or {})


def toytext_input(graph: str, task_input: dict[str, Any], states: int) -> ExpectedInput:
    """What a toy-text graph takes: its task's start state; `pos` (the gym state id) is required."""
    return ExpectedInput(
        graph=graph,
        required={"pos": int},
        optional=state_types(EnvState, but=("pos",)),  # validated with the types EnvState declares
        example=task_input,
        check=lambda value: None if 0 <= value["pos"] < states else f"'pos' must be a state id in 0..{states - 1}",
    )


def frozenlake_graph(config: Any = None) -> Any:
    """FrozenLake (configurable: size=4|8, seed=None|int) played by value iteration.

    Input: the task's start state, `trajgraph.adapters.gym_toytext.frozenlake_task(4).input`
    (e.g. {"pos": 0, "task": ..., "observation": ..., "actions": [...], "history": []}).
    """
    from trajgraph.adapters.gym_toytext import frozenlake_task, value_iteration

    cfg = _configurable(config)
    task = frozenlake_task(int(cfg.get("size", 4)), seed=cfg.get("seed"))
    assert task.oracle is not None
    graph = task.make_graph(oracle_policy(task.oracle))[0]
    return expect_input(graph, toytext_input("frozenlake", task.input, value_iteration(task).mdp.next.shape[0]))


def cliffwalking_graph(config: Any = None) -> Any:
    """CliffWalking from the standard start, played by value iteration. Input: `cliffwalking_task().input`."""
    from trajgraph.adapters.gym_toytext import cliffwalking_task, value_iteration

    task = cliffwalking_task()
    assert task.oracle is not None
    graph = task.make_graph(oracle_policy(task.oracle))[0]
    return expect_input(graph, toytext_input("cliffwalking", task.input, value_iteration(task).mdp.next.shape[0]))


@functools.lru_cache(maxsize=8)
def _textworld_task(seed: int) -> Any:
    from trajgraph.adapters.textworld_env import textworld_task

    return textworld_task(seed=seed)  # generates (or reads from its cache) the game: seconds, once per seed


def textworld_graph(config: Any = None) -> Any:
    """A generated tw-simple game (configurable: seed, default 1) played by its walkthrough.

    The reset node starts the game, so the input may be `{}` (or the task's input).
    Each call gives a graph with its own game engine (the engine lives outside the graph state).
    """
    from trajgraph.adapters.textworld_env import TextWorldState

    task = _textworld_task(int(_configurable(config).get("seed", 1)))
    assert task.oracle is not None
    graph = task.make_graph(oracle_policy(task.oracle))[0]
    spec = ExpectedInput(graph="textworld", optional=state_types(TextWorldState), example={},
                         hint="{} (the reset node starts the game; keys of its state are accepted and replaced)")
    return expect_input(graph, spec)


# LangGraph Server calls a graph factory on its event loop, for every request: these build the graph
# in a worker thread instead (a TextWorld game is generated or read from disk; gymnasium is imported).


def _off_the_loop(factory: Callable[[Any], Any]) -> Callable[[Any], Any]:
    async def serve(config: RunnableConfig) -> Any:
        return await asyncio.to_thread(factory, config)

    serve.__name__ = serve.__qualname__ = factory.__name__.removesuffix("_graph")
    serve.__doc__ = f"`{factory.__name__}` built off the event loop (what langgraph.json serves)."
    return serve


frozenlake = _off_the_loop(frozenlake_graph)
cliffwalking = _off_the_loop(cliffwalking_graph)
textworld = _off_the_loop(textworld_graph)

__all__ = ["EnvState", "env_loop_graph", "env_loop", "oracle_policy", "toytext_input", "frozenlake_graph",
           "cliffwalking_graph", "textworld_graph", "frozenlake", "cliffwalking", "textworld"]
