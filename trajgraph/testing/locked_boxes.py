"""Locked boxes: a generated text environment with partial credit and rare full success.

The objective names K containers to open ("open the red chest. open the blue
crate. ..."). One opens as it is; each other is locked until its own key is taken ("take red key"), which
the objective never says; keys and containers of other colours are distractors.
The score is the share of the named containers opened; the episode ends when all
are open or after `2K + slack` actions, so a policy that tries the lock first and
then fetches the key runs out of steps before the last one. A policy that ranks
commands by their likeness to the objective (the MiniLM base) opens few boxes and
almost never all: full success stays rare while scores are partial, which is the
setting where learning from a success threshold has nothing to copy and learning
from values and advantages must do the work (issue 18, item 6).

Everything lives in the env-loop state (the history), so checkpoints fork it.
`LockedBoxesSuite` draws tasks by seed; train and test seeds are disjoint.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trajgraph.envloop import EnvState, env_loop_graph

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black", "silver", "golden")
CONTAINERS = ("chest", "box", "crate", "cabinet", "safe", "locker", "trunk", "drawer")


@dataclass(frozen=True)
class World:
    goals: tuple[tuple[str, str], ...]  # (colour, container) to open
    distractors: tuple[tuple[str, str], ...]
    max_steps: int
    unlocked: tuple[str, ...] = ()  # colours whose container opens without a key

    @property
    def objective(self) -> str:
        return " ".join(f"Open the {c} {k}." for c, k in self.goals)

    def progress(self, history: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
        """(keys held, containers opened) after the history's actions."""
        keys: set[str] = set()
        opened: set[str] = set()
        for turn in history:
            action = str(turn.get("action") or "")
            if action.startswith("take ") and action.endswith(" key"):
                keys.add(action[5:-4])
            elif action.startswith("open "):
                colour = action.split(" ")[1]
                if colour in keys or colour in self.unlocked:
                    opened.add(action[5:])
        return keys, opened

    def admissible(self, keys: set[str], opened: set[str]) -> list[str]:
        items = sorted(self.goals + self.distractors)
        acts = [f"take {c} key" for c, _ in items if c not in keys] + [f"open {c} {k}" for c, k in items if f"{c} {k}" not in opened]
        return acts + ["look around", "wait"]

    def score(self, opened: set[str]) -> float:
        return sum(f"{c} {k}" in opened for c, k in self.goals) / len(self.goals)


def make_world(seed: int, goals: int = 3, distractors: int = 2, slack: int = 1, unlocked: int = 1) -> World:
    rng = random.Random(seed)
    colours = rng.sample(COLOURS, goals + distractors)
    pairs = tuple((c, rng.choice(CONTAINERS)) for c in colours)
    free = tuple(c for c, _ in rng.sample(pairs[:goals], min(unlocked, goals)))
    return World(goals=pairs[:goals], distractors=pairs[goals:], max_steps=2 * goals + slack, unlocked=free)


def start_state(world: World, task: str) -> EnvState:
    return {"task": world.objective, "observation": f"You are in a storeroom. {task}", "actions": world.admissible(set(), set()),
            "score": 0.0, "done": False, "history": [], "pos": 0}


def env_node(world: World) -> Callable[[EnvState], dict[str, Any]]:
    """One action: take a key, open a container (locked without its key), or nothing."""

    def env(state: EnvState) -> dict[str, Any]:
        history = list(state.get("history") or [])
        keys, opened = world.progress(history)
        action = str(state.get("action") or "")
        if action.startswith("take ") and action.endswith(" key"):
            obs = f"You take the {action[5:-4]} key."
        elif action.startswith("open "):
            colour = action.split(" ")[1]
            obs = f"You open the {action[5:]}." if colour in keys or colour in world.unlocked else f"The {action[5:]} is locked."
        else:
            obs = "Nothing happens."
        turn: dict[str, Any] = {"action": action, "observation": obs, "reward": None}
        keys, opened = world.progress(history + [turn])
        score = world.score(opened)
        steps = len(history) + 1
        done = score >= 1.0 or steps >= world.max_steps
        turn["reward"] = score if done else None
        return {"observation": obs, "actions": [] if done else world.admissible(keys, opened), "done": done,
                "reward": score if done else None, "score": score, "pos": steps, "history": [turn]}

    return env


@dataclass(frozen=True)
class LockedBoxesTask:
    """One generated world (the `Task` protocol of `trajgraph.envloop.task`)."""

    id: str
    input: dict
    world: World
    decision_node: str = "policy"
    optimum: float = 1.0

    @property
    def max_steps(self) -> int:
        return self.world.max_steps

    def make_graph(self, policy_node: Callable[[EnvState], dict[str, Any]]) -> tuple[Any, None]:
        return env_loop_graph(env_node(self.world), policy_node, "locked_boxes").compile(name="locked_boxes"), None

    @staticmethod
    def outcome(state: dict[str, Any]) -> float | None:
        value = state.get("reward")
        return float(value) if isinstance(value, (int, float)) else None


class LockedBoxesSuite:
    """Locked-boxes worlds by seed; `train` and `test` use disjoint seeds."""

    name = "locked-boxes"

    def __init__(self, goals: int = 3, distractors: int = 2, slack: int = 1, unlocked: int = 1) -> None:
        self.goals, self.distractors, self.slack, self.unlocked = goals, distractors, slack, unlocked

    def tasks(self, split: str = "test", n: int = 10, seed: int = 0) -> list[LockedBoxesTask]:
        offset = 0 if split == "train" else 500_000
        out = []
        for i in range(n):
            s = offset + seed * 10_000 + i
            world = make_world(s, self.goals, self.distractors, self.slack, self.unlocked)
            tid = f"boxes-{split}-{s}"
            out.append(LockedBoxesTask(id=tid, input=dict(start_state(world, world.objective)), world=world))
        return out


__all__ = ["LockedBoxesSuite", "LockedBoxesTask", "World", "make_world", "env_node", "start_state"]
