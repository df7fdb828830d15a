"""Ready-made environment-loop graphs for `langgraph dev` (see langgraph.json).

They play with the task's oracle policy, so Studio shows a full episode offline, and
they check their input first (`trajgraph.graphs._inputs`): an empty or malformed input
gets one message naming the expected input, not a KeyError. The env-loop contract
itself (EnvState, the builder) is core: `trajgraph.envloop`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig

from trajgraph.envloop import EnvState, oracle_policy
from trajgraph.graphs._inputs import ExpectedInput, expect_input, state_types

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

__all__ = ["toytext_input", "frozenlake_graph",
           "cliffwalking_graph", "textworld_graph", "frozenlake", "cliffwalking", "textworld"]
