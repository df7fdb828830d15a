"""Tiny environments and agents for tests and examples.

- `deceptive_chain_graph`: an environment-loop graph with a known optimum and a
  tempting trap; the whole environment lives in graph state, so checkpoints fork it.
- `CorridorEnv` + `corridor_graph`: the environment lives *outside* the graph and
  forks by `snapshot()/restore()`, like a real game engine.
- `react_calculator_agent`: the prebuilt ReAct agent on a scripted tool model.

`EnvState` and the env-loop builder `env_loop_graph` live in the library
(`trajgraph.graphs.env_loop`); they are imported here so the kit's old names work.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from trajgraph.graphs.env_loop import EnvState, env_loop_graph

# -- a deceptive chain -----------------------------------------------------------

CHAIN_ACTIONS = ("left", "right", "up", "jump")


def chain_solution(seed: int, depth: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(("left", "right", "up")) for _ in range(depth)]


def chain_env_node(solution: Sequence[str]) -> Callable[[EnvState], dict[str, Any]]:
    """Correct move: advance. 'jump' is the trap: +0.3 at once, then the episode
    ends with reward 0.3. Any other wrong move ends it with 0. The optimum is 1.0."""

    def env(state: EnvState) -> dict[str, Any]:
        pos, action = state.get("pos", 0), state.get("action")
        if action == solution[pos]:
            pos += 1
            done = pos == len(solution)
            obs = "you reach the exit" if done else f"room {pos}: three doors and a ledge"
            reward = 1.0 if done else None
            score = pos / len(solution)
        elif action == "jump":
            done, obs, reward, score = True, "you jump to a ledge with a few coins; no way on", 0.3, state.get("score", 0) + 0.3
        else:
            done, obs, reward, score = True, "the floor gives way", 0.0, 0.0
        return {
            "pos": pos,
            "observation": obs,
            "actions": [] if done else list(CHAIN_ACTIONS),
            "done": done,
            "reward": reward,
            "score": score,
            "history": [{"action": action, "observation": obs, "reward": reward}],
        }

    return env


def noisy_chain_policy(solution: Sequence[str], skill: float, trap: float, seed: int = 0) -> Callable[[EnvState], dict[str, Any]]:
    """Picks the right door with probability `skill`, the trap with `trap`, else a wrong door."""
    rng = random.Random(seed)

    def policy(state: EnvState) -> dict[str, Any]:
        right = solution[state.get("pos", 0)]
        u = rng.random()
        if u < skill:
            return {"action": right}
        if u < skill + trap:
            return {"action": "jump"}
        return {"action": rng.choice([a for a in ("left", "right", "up") if a != right])}

    return policy


def deceptive_chain_graph(depth: int = 5, skill: float = 0.6, trap: float = 0.25, seed: int = 0) -> Any:
    """Compiled env-loop graph of the deceptive chain; decision node: 'policy'.

    Greedy success rate is skill**depth (0.6**5 ≈ 8%); the optimum reward is 1.0.
    """
    solution = chain_solution(seed, depth)
    g = env_loop_graph(chain_env_node(solution), noisy_chain_policy(solution, skill, trap, seed + 1), "deceptive_chain")
    return g.compile(name="deceptive_chain")


def chain_start(task: str = "chain") -> EnvState:
    return {"task": task, "observation": "room 0: three doors and a ledge", "actions": list(CHAIN_ACTIONS), "pos": 0, "score": 0.0, "done": False, "history": []}


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


# -- a task suite over the deceptive chain (same shape as trajgraph.adapters' suites) --


@dataclass(frozen=True)
class ChainTask:
    id: str
    input: dict
    decision_node: str
    solution: tuple[str, ...]
    max_steps: int
    optimum: float = 1.0

    def make_graph(self, policy_node: Callable[[EnvState], dict[str, Any]]) -> tuple[Any, None]:
        g = env_loop_graph(chain_env_node(self.solution), policy_node, "deceptive_chain")
        return g.compile(name="deceptive_chain"), None

    @staticmethod
    def outcome(state: dict[str, Any]) -> float | None:
        value = state.get("reward")
        return float(value) if isinstance(value, (int, float)) else None

    def oracle(self, state: dict[str, Any]) -> str:
        return self.solution[state.get("pos", 0)]


class ChainSuite:
    """Deceptive chains by seed; `train` and `test` splits use disjoint seeds."""

    name = "chain"

    def __init__(self, depth: int = 5) -> None:
        self.depth = depth

    def tasks(self, split: str = "test", n: int = 10, seed: int = 0) -> list[ChainTask]:
        offset = 0 if split == "train" else 10_000
        out = []
        for i in range(n):
            s = offset + seed * 1000 + i
            out.append(ChainTask(id=f"chain-{split}-{s}", input=chain_start(f"chain-{s}"), decision_node="policy",
                                 solution=tuple(chain_solution(s, self.depth)), max_steps=self.depth))
        return out


class NoisyOracle:
    """Decision node for chain tasks: the oracle's door with probability `skill`."""

    def __init__(self, task: ChainTask, skill: float = 0.6, trap: float = 0.25, seed: int = 0) -> None:
        self.node = noisy_chain_policy(task.solution, skill, trap, seed)
        self.name = f"simulated(skill={skill})"

    def __call__(self, state: EnvState) -> dict[str, Any]:
        return self.node(state)
