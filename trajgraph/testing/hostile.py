"""Hostile values and a store seeded with them: what every reader of a store must survive.

The fault-injection benchmark records these values and the reader tests run
every reader (exports, training data, the viewer's API, `runs`/`show`, spans)
over `seed_hostile_store`: a lone surrogate (what `os.fsdecode` gives for a
non-UTF-8 file name), terminal escape sequences, NaN, bytes, cycles, deep
nesting, tag-shaped user data, in graph names, tags, tasks, observations,
actions, model messages, search nodes and preference pairs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SURROGATE = "caf\udce9"  # os.fsdecode(b"caf\xe9"): UTF-8 cannot hold it
ESCAPES = "\x1b[31mred\x1b[0m\x1b]0;TITLE\x07\x1b[2J"  # colour, window title, clear screen
HOSTILE_TEXT = f"{SURROGATE} {ESCAPES} \u202eevil"


class _ReprRaises:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def hostile_values() -> dict[str, Any]:
    """Values JSON has no plain form for, by name (numpy is needed for the array)."""
    import numpy as np

    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    deep: list[Any] = []
    cur = deep
    for _ in range(600):
        cur.append([])
        cur = cur[0]
    return {"lone surrogate": SURROGATE + ".txt", "escape sequences": ESCAPES, "nesting 600": deep, "self-reference": loop,
            "__repr__ raises": _ReprRaises(), "NaN/inf": [math.nan, math.inf], "bytes": b"\x00\xff",
            "1 and '1' keys": {1: "a", "1": "b"}, "large array": np.arange(200_000, dtype=np.float32),
            "tag-shaped data": {"x": {"__lc_message__": 1}, "__send__": 2}}


def value_chain(first: Any, n: int = 4) -> Any:
    """A compiled n-node graph whose first node writes `first` (a hostile value) and the rest count."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class S(TypedDict, total=False):
        value: Any
        n: int

    g = StateGraph(S)
    g.add_node("n0", lambda s: {"value": first, "n": 1})
    g.add_edge(START, "n0")
    for i in range(1, n):
        g.add_node(f"n{i}", lambda s, i=i: {"value": i, "n": i + 1})
        g.add_edge(f"n{i - 1}", f"n{i}")
    g.add_edge(f"n{n - 1}", END)
    return g.compile()


HOSTILE_ACTIONS = (SURROGATE, "go \x1b[2J")  # the first wins


def _hostile_env(state: dict[str, Any]) -> dict[str, Any]:
    """Two moves deep; the surrogate action advances, the other ends the episode with 0."""
    pos, action = state.get("pos", 0), state.get("action")
    good = action == HOSTILE_ACTIONS[0]
    pos += int(good)
    done = not good or pos == 2
    obs = f"room {pos} {HOSTILE_TEXT}" if good else f"fell {ESCAPES}"
    reward = (1.0 if good else 0.0) if done else None
    return {"pos": pos, "observation": obs, "actions": [] if done else list(HOSTILE_ACTIONS), "done": done, "reward": reward,
            "score": float(pos) / 2, "history": [{"action": action, "observation": obs, "reward": reward}]}


def hostile_start() -> dict[str, Any]:
    return {"task": f"task {HOSTILE_TEXT}", "observation": f"room 0 {HOSTILE_TEXT}", "actions": list(HOSTILE_ACTIONS),
            "pos": 0, "score": 0.0, "done": False, "history": []}


def seed_hostile_store(store: Any) -> dict[str, list[str]]:
    """Record runs, a search (tree, pairs, rollouts) and model calls full of hostile text; returns run ids by kind."""
    import trajgraph as tg
    from trajgraph.envloop import env_loop_graph
    from trajgraph.testing.fake_models import ScriptedToolModel, fake_tool_call
    from trajgraph.testing.tiny_env import ScriptedPolicy, react_calculator_agent
    from trajgraph.trajectory import PreferencePair

    ids: dict[str, list[str]] = {"values": [], "env": [], "search": [], "react": []}

    def new(before: set[str]) -> list[str]:
        return sorted({r.id for r in store.runs()} - before)

    for name, value in hostile_values().items():
        before = {r.id for r in store.runs()}
        tg.record(value_chain(value), store=store, name=f"{name} {HOSTILE_TEXT}", tags=[HOSTILE_TEXT]).invoke({"n": 0})
        ids["values"] += new(before)

    def policy(state: dict[str, Any]) -> dict[str, Any]:
        return {"action": HOSTILE_ACTIONS[0]}

    graph = env_loop_graph(_hostile_env, policy).compile(name=f"env {HOSTILE_TEXT}")
    for plan in ((0, 0), (0, 1), (1,)):
        def scripted(state: dict[str, Any], plan: tuple[int, ...] = plan) -> dict[str, Any]:
            return {"action": HOSTILE_ACTIONS[plan[min(state.get("pos", 0), len(plan) - 1)]]}

        before = {r.id for r in store.runs()}
        loop = env_loop_graph(_hostile_env, scripted).compile(name=f"env {HOSTILE_TEXT}")
        tg.record(loop, store=store, tags=[HOSTILE_TEXT], task=lambda inp: inp["task"]).invoke(hostile_start())
        ids["env"] += new(before)

    before = {r.id for r in store.runs()}
    tg.search(graph, hostile_start(), decision_node="policy", optimizer=tg.MCTS(k=2),
              policy=ScriptedPolicy(lambda s, k, rng: [{"action": a} for a in HOSTILE_ACTIONS]),
              budget=tg.Budget(policy_calls=12), store=store, task=f"task {HOSTILE_TEXT}", tags=[HOSTILE_TEXT])
    ids["search"] += new(before)
    search = next(r for r in store.runs() if r.id in ids["search"] and r.kind == "search")
    task = f"task {HOSTILE_TEXT}"
    store.write(pairs=[PreferencePair(  # a step-level pair as RRO writes one, hostile on every side
        run_id=search.id, source="rro", prompt={"task": task, "history": [[HOSTILE_ACTIONS[0], f"room 1 {HOSTILE_TEXT}"]]},
        chosen={"action": {"action": HOSTILE_ACTIONS[0]}, "text": HOSTILE_ACTIONS[0]},
        rejected={"action": {"action": HOSTILE_ACTIONS[1]}, "text": HOSTILE_ACTIONS[1]},
        chosen_score=1.0, rejected_score=0.0, task=task)])

    model = ScriptedToolModel(script=[[fake_tool_call("add", a=2, b=3)], f"The answer is 5 {HOSTILE_TEXT}"])
    before = {r.id for r in store.runs()}
    tg.record(react_calculator_agent(model), store=store, tags=[HOSTILE_TEXT]).invoke(
        {"messages": [("user", f"What is 2+3? {HOSTILE_TEXT}")]})
    ids["react"] += new(before)
    return ids


def seeded_store(path: str | Path) -> Any:
    """A SQLite store at `path` seeded by `seed_hostile_store` (closed; reopen to read)."""
    import trajgraph as tg

    store = tg.Store(path)
    seed_hostile_store(store)
    store.close()
    return Path(path)


__all__ = ["SURROGATE", "ESCAPES", "HOSTILE_TEXT", "hostile_values", "seed_hostile_store", "seeded_store", "hostile_start"]
