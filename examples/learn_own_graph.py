"""Learning from your own graph: a reset node, your own state keys, your own policy.

The agent below is written the way a user writes one, not the trajgraph way:

- its state keys are its own: `goal` (the task), `seen` (the observation),
  `options` (the admissible actions), `moves` (the history, a plain list of action
  strings that each step overwrites) and `choice` (what the decision node writes);
- a `reset` node builds the first state from a natural input, {task_id, variation};
- its decision node `decide` is its own policy, which exposes `scores(state)` and a
  `temperature` (trajgraph then uses those scores as the base the head learns on top of).

The walkthrough: search the training tasks into a store, read every decision through one
`StateMap`, train a head that starts from the agent's own policy, put it back with
`tg.with_policy`, and compare greedy success on unseen variations.

    python examples/learn_own_graph.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

import trajgraph as tg
from trajgraph.envloop import StateMap
from trajgraph.learn import decisions
from trajgraph.learn.data import ReadReport
from trajgraph.learn.train import NotImprovedWarning

COLORS = ["red", "green", "blue", "yellow", "white", "black"]


def code_of(variation: int) -> list[str]:
    """The vault's code: three colors fixed by the variation."""
    rng = random.Random(variation)
    return rng.sample(COLORS, 3)


class VaultState(TypedDict, total=False):
    task_id: str
    variation: int
    goal: str
    seen: str
    options: list[str]
    moves: list[str]  # no reducer: each step writes the whole list
    choice: str
    reward: float
    done: bool


def reset(state: VaultState) -> dict[str, Any]:
    """Build the first state from {task_id, variation}."""
    a, b, c = code_of(state["variation"])
    goal = f"Open the vault. First press the {a} button. Then press the {b} button. Last, press the {c} button."
    return {"goal": goal, "seen": "The vault door is shut. Six colored buttons glow on the panel.",
            "options": [f"press {x}" for x in COLORS] + ["kick the door"], "moves": [], "done": False}


def env(state: VaultState) -> dict[str, Any]:
    moves = [*state.get("moves", []), state["choice"]]
    code = [f"press {x}" for x in code_of(state["variation"])]
    right = moves == code[: len(moves)]
    seen = f"Click. {len(moves)} of 3 lights glow green." if right else "Bzzt. The panel flashes red."
    done = not right or len(moves) == len(code)
    out: dict[str, Any] = {"moves": moves, "seen": seen, "done": done}
    if done:
        out["reward"] = 1.0 if right else 0.0
    return out


class WordMatcher:
    """The user's own policy: prefers options whose words appear in the goal, at temperature 0.5.

    Samples with a random stream seeded by the state, so the same state gets the same answer."""

    temperature = 0.5

    def scores(self, state: dict[str, Any]) -> list[float]:
        goal = set(state["goal"].lower().replace(".", "").replace(",", "").split())
        return [float(len(goal & set(o.split()))) for o in state["options"]]

    def __call__(self, state: dict[str, Any]) -> dict[str, Any]:
        scores = self.scores(state)
        top = max(scores)
        weights = [math.exp((s - top) / self.temperature) for s in scores]
        seed = hashlib.sha256(repr((state["goal"], state.get("moves"))).encode()).digest()
        return {"choice": random.Random(seed).choices(state["options"], weights=weights)[0]}


def route(state: VaultState) -> str:
    return END if state.get("done") else "decide"


def build(policy: Any = None) -> Any:
    g = StateGraph(VaultState)
    g.add_node("reset", reset)
    g.add_node("decide", policy or WordMatcher())
    g.add_node("env", env)
    g.add_edge(START, "reset")
    g.add_conditional_edges("reset", route, ["decide", END])
    g.add_edge("decide", "env")
    g.add_conditional_edges("env", route, ["decide", END])
    return g.compile(name="vault")


STATE_MAP = StateMap(task="goal", observation="seen", actions="options", history="moves", action="choice",
                     history_reducer="replace")


class EveryOption:
    """Search candidates: every option, in a random order (a search's proposer; the agent itself is greedy-ish)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    async def propose(self, state: dict[str, Any], k: int) -> list[dict[str, Any]]:
        options = list(state["options"])
        self.rng.shuffle(options)
        return [{"choice": o} for o in (options * k)[:k]]


def success(graph: Any, variations: list[int]) -> float:
    return sum(graph.invoke({"task_id": f"vault-{v}", "variation": v}).get("reward", 0.0) for v in variations) / len(variations)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    db = str(out / "vault.db")
    train, test = list(range(0, 12)), list(range(100, 110))
    agent = build()
    started = time.perf_counter()
    for v in train:  # 1. search the training tasks; each search stores its tree, rollouts and pairs
        tg.search(agent, {"task_id": f"vault-{v}", "variation": v}, decision_node="decide", optimizer=tg.MCTS(k=7),
                  budget=tg.Budget(policy_calls=120), store=db, policy=EveryOption(v), task=f"vault-{v}", repeatable=True)
    # 2. read every decision through the state map (a mis-read key would be one ConfigError)
    report = ReadReport()
    print(f"searched {len(train)} tasks in {time.perf_counter() - started:.1f}s")
    ds = decisions(db, state_map=STATE_MAP, report=report)
    print(f"decisions read: {report.read} of {report.decision_steps} decision steps in {report.runs} runs ({len(ds)} distinct)")
    # 3. train a head whose base is the agent's own decision node
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotImprovedWarning)
        result = tg.train_policy(db, out / "head", graph=agent, decision_node="decide", state_map=STATE_MAP, temperature=0.0, features="scalars",
                                 epochs=20, min_steps=100)
    card = result.card
    print(f"trained {card['name']} on base {card['base']['kind']} ({card['base']['source']}), improved: {result.improved}, "
          f"epochs run: {card['fit']['epochs_run']}, {card['fit']['seconds']}s")
    # 4. put it back into the graph and compare on unseen variations
    trained = tg.with_policy(agent, out / "head", decision_node="decide")
    print(f"greedy success on unseen variations: own policy {success(agent, test):.2f}, trained {success(trained, test):.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "learn-own-graph"))
