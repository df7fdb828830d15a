"""Tiny environments and agents for tests and examples.

- `deceptive_chain_graph`: an environment-loop graph with a known optimum and a
  tempting trap; the whole environment lives in graph state, so checkpoints fork it.
- `CorridorEnv` + `corridor_graph`: the environment lives *outside* the graph and
  forks by `snapshot()/restore()`, like a real game engine.
- `react_calculator_agent`: the prebuilt ReAct agent on a scripted tool model.

`EnvState` and the env-loop builder `env_loop_graph` live in the library
(`trajgraph.envloop`), the deceptive chain in `trajgraph.testing.chain`
(its task suite, `ChainSuite`, in `trajgraph.testing.chain_suite`); they are imported
here so the kit's old names work.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from trajgraph.envloop import EnvState, env_loop_graph
from trajgraph.testing.chain import (  # noqa: F401 (the kit's names for the chain)
    CHAIN_ACTIONS,
    chain_env_node,
    chain_solution,
    chain_start,
    deceptive_chain_graph,
    noisy_chain_policy,
)

# -- an environment outside the graph ---------------------------------------------


class CorridorEnv:
    """A corridor of `length` cells held outside the graph; forks by snapshot/restore."""

    def __init__(self, length: int = 4) -> None:
        self.length = length
        self.pos = 0
        self.steps = 0

    def reset(self) -> str:
        self.pos, self.steps = 0, 0
        return "at 0"

    def step(self, action: str) -> tuple[str, float, bool]:
        self.steps += 1
        self.pos = max(0, self.pos + (1 if action == "forward" else -1))
        done = self.pos >= self.length or self.steps >= 3 * self.length
        return f"at {self.pos}", (1.0 if self.pos >= self.length else 0.0), done

    def snapshot(self) -> tuple[int, int]:
        return (self.pos, self.steps)

    def restore(self, snap: tuple[int, int]) -> None:
        self.pos, self.steps = snap


def corridor_graph(env: CorridorEnv, policy: Callable[[EnvState], dict[str, Any]] | None = None) -> Any:
    def env_node(state: EnvState) -> dict[str, Any]:
        obs, reward, done = env.step(state["action"] or "")
        return {"observation": obs, "done": done, "reward": reward if done else None, "actions": [] if done else ["forward", "back"],
                "history": [{"action": state["action"], "observation": obs}]}

    policy = policy or (lambda state: {"action": "forward"})
    return env_loop_graph(env_node, policy, "corridor").compile(name="corridor")


# -- a scripted policy -------------------------------------------------------------


class ScriptedPolicy:
    """A policy for `optimize(policy=...)`: `fn(state, k, rng) -> list of actions`.

    Actions are node updates, e.g. {"action": "left"} for an env loop.
    """

    def __init__(self, fn: Callable[[dict[str, Any], int, random.Random], list[Any]], seed: int = 0, name: str = "scripted") -> None:
        self.fn = fn
        self.rng = random.Random(seed)
        self.name = name

    async def propose(self, state: dict[str, Any], k: int) -> list[Any]:
        return list(self.fn(state, k, self.rng))[:k]


# -- the prebuilt ReAct agent ------------------------------------------------------


def calculator_tools() -> list[Any]:
    """The `add` and `multiply` tools the calculator agents use."""
    from langchain_core.tools import tool

    @tool
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @tool
    def multiply(a: float, b: float) -> float:
        """Multiply two numbers."""
        return a * b

    return [add, multiply]


def react_calculator_agent(model: Any) -> Any:
    """`create_react_agent` with add/multiply tools on the given (fake) chat model."""
    import warnings

    from langgraph.prebuilt import create_react_agent

    with warnings.catch_warnings():  # deprecated in favour of langchain.agents.create_agent; still widely used
        warnings.simplefilter("ignore", DeprecationWarning)
        return create_react_agent(model, calculator_tools(), name="calculator")
