"""The deceptive chain: an environment-loop task with a known optimum and a tempting trap.

A chain of rooms; at each the right door (one of left/right/up, drawn by seed)
advances, another door ends the episode with reward 0, and "jump" is the trap:
+0.3 at once, then the episode ends with 0.3. The optimum is 1.0. The whole
environment lives in the graph state, so checkpoints fork it; a noisy policy
(`noisy_chain_policy`) makes greedy decoding fail most of the time (0.6**5 ≈ 8%
at depth 5), which is what searches are measured against. The task suite over it
is `trajgraph.testing.chain_suite`; the test kit (`trajgraph.testing`) uses it too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from trajgraph.envloop import EnvState, env_loop_graph

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


__all__ = ["CHAIN_ACTIONS", "chain_solution", "chain_env_node", "noisy_chain_policy", "deceptive_chain_graph", "chain_start"]
