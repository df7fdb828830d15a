"""Stores built from real recorded and searched runs, shared by the export, trace and viewer tests.

`Facts` holds what the builders know independently of the code under test (from
the graphs' own returns), so the tests can check what the exporters and the
viewer read back against it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from langchain_core.runnables import RunnableConfig

import trajgraph as tg
from trajgraph.testing import FakeToolModel, ScriptedToolModel, deceptive_chain_graph, fake_tool_call, react_calculator_agent
from trajgraph.testing.tiny_env import CHAIN_ACTIONS, chain_env_node, chain_solution, chain_start, env_loop_graph
from trajgraph.trajectory import PreferencePair, Run, SearchNode, new_id

CHAIN_DEPTH = 3
CHAIN_SEED = 1  # deceptive_chain_graph(depth=3, skill=.75, trap=.15, seed=1): 2 wins, 4 losses in 6 runs
SEARCH_TASK = "chain-search"


@dataclass
class Facts:
    """What the builders know independently of the exporters (from the graphs' own returns)."""

    path: Path
    calc_ok: list[str] = field(default_factory=list)
    calc_failed: list[str] = field(default_factory=list)
    env_rewards: dict[str, float] = field(default_factory=dict)  # recorded env-loop run -> final reward
    search_id: str = ""
    rollout_rewards: dict[str, float] = field(default_factory=dict)
    node_values: dict[int, float] = field(default_factory=dict)  # non-root search node -> value
    leaves: int = 0
    path_steps: int = 0  # sum over leaves of their depth
    pairs: int = 0
    best_path: list[str] = field(default_factory=list)
    real_searches: dict[str, str] = field(default_factory=dict)  # optimizer name -> search run written by tg.search
    real_rollouts: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> its rollouts' outcomes

    def outcome_groups(self) -> list[dict[str, float]]:
        """Run outcomes grouped by task: the runs ETO may pair."""
        return [self.env_rewards, self.rollout_rewards, *self.real_rollouts.values()]


def _new_run(store: tg.Store, before: set[str]) -> str:
    (run_id,) = {r.id for r in store.runs()} - before
    return run_id


def record_calculator_runs(store: tg.Store, facts: Facts, n_ok: int = 3) -> None:
    """The prebuilt ReAct agent on a scripted tool model: (2+3)*4 with two tool calls."""
    for i in range(n_ok):
        model = ScriptedToolModel(script=[[fake_tool_call("add", a=2, b=3 + i)], [fake_tool_call("multiply", a=5 + i, b=4)], f"The answer is {(5 + i) * 4}."])
        agent = tg.record(react_calculator_agent(model), store=store, tags=["calc"])
        before = {r.id for r in store.runs()}
        agent.invoke({"messages": [("user", f"What is (2+{3 + i})*4?")]})
        facts.calc_ok.append(_new_run(store, before))

    def broken(messages: Any, rng: random.Random) -> Any:
        raise RuntimeError("model backend down")

    agent = tg.record(react_calculator_agent(FakeToolModel(respond=broken)), store=store, tags=["calc"])
    before = {r.id for r in store.runs()}
    with pytest.raises(RuntimeError):
        agent.invoke({"messages": [("user", "What is 1+1?")]})
    facts.calc_failed.append(_new_run(store, before))


def record_env_runs(store: tg.Store, facts: Facts, n: int = 6) -> None:
    """The deceptive chain with its own noisy policy; the final reward comes from the returned state."""
    graph = tg.record(deceptive_chain_graph(depth=CHAIN_DEPTH, skill=0.75, trap=0.15, seed=CHAIN_SEED), store=store,
                      task=lambda inp: inp["task"])
    for _ in range(n):
        before = {r.id for r in store.runs()}
        final = graph.invoke(chain_start("chain-a"))
        facts.env_rewards[_new_run(store, before)] = float(final["reward"])


def _plan_policy(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    return {"action": config["configurable"]["plan"][len(state.get("history") or [])]}


def record_search(store: tg.Store, facts: Facts) -> str:
    """A searched run written as optimizers write one (CONTRIBUTING.md "Search data conventions").

    It expands every action at each decision point of the deceptive chain with the
    real environment function (an exhaustive tree whose every value is known, which
    no optimizer's sampling would give), stores the tree with backed-up values,
    RRO-style pairs (the rising action vs each one it beat), and one real recorded
    rollout per leaf; the tests read everything else from the store.
    """
    solution = chain_solution(CHAIN_SEED, CHAIN_DEPTH)
    env = chain_env_node(solution)
    start = chain_start(SEARCH_TASK)
    search = Run(id=new_id(), graph="deceptive_chain", kind="search", input=start, task=SEARCH_TASK, tags=("searched",))
    store.add_run(search)
    nodes: list[dict[str, Any]] = [{"id": 0, "parent_id": None, "depth": 0, "action": None, "observation": start["observation"],
                                    "terminal": False, "outcome": None, "path": []}]

    def expand(parent: dict[str, Any], state: Any) -> None:
        for action in CHAIN_ACTIONS:
            update = env({**state, "action": action})
            node = {"id": len(nodes), "parent_id": parent["id"], "depth": parent["depth"] + 1, "action": action,
                    "observation": update["observation"], "terminal": update["done"], "outcome": update["reward"],
                    "path": [*parent["path"], action]}
            nodes.append(node)
            if not update["done"]:
                expand(node, {**state, **update})

    expand(nodes[0], start)
    kids: dict[int, list[dict[str, Any]]] = {}
    for n in nodes[1:]:
        kids.setdefault(n["parent_id"], []).append(n)

    def leaves(n: dict[str, Any]) -> list[float]:
        return [n["outcome"]] if n["terminal"] else [x for k in kids[n["id"]] for x in leaves(k)]

    rows = []
    for n in nodes:
        outs = leaves(n)
        value = max(outs)  # exhaustive expansion: back up the best reachable outcome
        chosen = n["path"] == solution[: len(n["path"])]
        rows.append(SearchNode(
            run_id=search.id, id=n["id"], parent_id=n["parent_id"], depth=n["depth"],
            action=None if n["action"] is None else {"action": n["action"]}, action_text=n["action"] or "",
            observation=n["observation"], score=round(0.2 + 0.6 * value, 3), value=value, visits=len(outs),
            outcome=n["outcome"], terminal=n["terminal"], chosen=chosen,
            reason="on the returned path" if chosen and n["id"] else ("" if n["id"] else "decision point"),
            created_at=time.time()))
        if n["id"]:
            facts.node_values[n["id"]] = value
    pairs = []
    for parent in [n for n in nodes if n["id"] in kids and n["path"] == solution[: len(n["path"])]]:
        best = next(k for k in kids[parent["id"]] if k["action"] == solution[parent["depth"]])
        history = [[a, next(x["observation"] for x in nodes if x["path"] == parent["path"][: i + 1])] for i, a in enumerate(parent["path"])]
        for other in kids[parent["id"]]:
            if other is best:
                continue
            pairs.append(PreferencePair(
                run_id=search.id, source="rro", prompt={"task": SEARCH_TASK, "history": history},
                chosen={"action": {"action": best["action"]}, "text": best["action"]},
                rejected={"action": {"action": other["action"]}, "text": other["action"]},
                chosen_score=rows[best["id"]].value, rejected_score=rows[other["id"]].value,
                node_id=parent["id"], chosen_node=best["id"], rejected_node=other["id"], task=SEARCH_TASK))
    store.write(search_nodes=rows, pairs=pairs)

    graph = tg.record(env_loop_graph(env, _plan_policy).compile(name="deceptive_chain"), store=store, task=lambda inp: inp["task"])
    for leaf in [n for n in nodes if n["terminal"]]:
        before = {r.id for r in store.runs()}
        final = graph.invoke(chain_start(SEARCH_TASK), {"configurable": {"plan": leaf["path"]}})
        run_id = _new_run(store, before)
        best = final["reward"] == 1.0
        store.update_run(run_id, kind="rollout", parent_id=search.id, outcome=float(final["reward"]), tags=["best"] if best else [])
        facts.rollout_rewards[run_id] = float(final["reward"])
        facts.leaves += 1
        facts.path_steps += len(leaf["path"])
    store.update_run(search.id, status="succeeded", outcome=1.0, ended_at=time.time(), output={"actions": solution})
    facts.pairs = len(pairs)
    facts.best_path = list(solution)
    return search.id


def record_real_searches(store: tg.Store, facts: Facts) -> None:
    """RRO (Monte Carlo process reward) and MCTS through `tg.search`, recorded by the optimizers themselves."""
    from trajgraph.search.rollout_value import RolloutValue

    for name, optimizer, reward, calls in (("rro", tg.RRO(k_max=3), RolloutValue(n=3), 80), ("mcts", tg.MCTS(k=3), None, 60)):
        task = f"chain-{name}"
        result = tg.search(deceptive_chain_graph(depth=CHAIN_DEPTH, seed=4, skill=0.7), chain_start(task), decision_node="policy",
                           optimizer=optimizer, reward=reward, budget=tg.Budget(policy_calls=calls), store=store, task=task)
        facts.real_searches[name] = cast(str, result.run_id)
        facts.real_rollouts[task] = {rid: cast(float, store.run(rid).outcome) for rid in result.rollout_ids}


def _noisy_calculator(messages: list[Any], rng: random.Random) -> Any:
    last = messages[-1]
    if last.type == "human":  # the right tool half of the time
        return [fake_tool_call("multiply", a=3, b=4)] if rng.random() < 0.5 else [fake_tool_call("add", a=3, b=4)]
    return f"The answer is {last.content}"


def _answered_12(state: dict[str, Any]) -> float | None:
    last = state["messages"][-1]
    return float("12" in str(last.content)) if last.type == "ai" and not last.tool_calls else None


def record_react_search(store: tg.Store, facts: Facts) -> None:
    """MCTS over the ReAct agent's own model node: rollouts are message states, pairs are tool calls."""
    agent = react_calculator_agent(FakeToolModel(respond=_noisy_calculator, seed=1))
    result = tg.search(agent, {"messages": [("user", "what is 3 times 4?")]}, decision_node="agent", optimizer=tg.MCTS(k=3),
                       budget=tg.Budget(policy_calls=12), outcome=_answered_12, store=store, task="times")
    facts.real_searches["react"] = cast(str, result.run_id)
    facts.real_rollouts["times"] = {rid: cast(float, store.run(rid).outcome) for rid in result.rollout_ids}


def build_store(path: Path) -> Facts:
    facts = Facts(path=path)
    store = tg.Store(path)
    record_calculator_runs(store, facts)
    record_env_runs(store, facts)
    facts.search_id = record_search(store, facts)
    record_real_searches(store, facts)
    record_react_search(store, facts)
    store.close()
    return facts


