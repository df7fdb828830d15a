"""The search contract a custom optimizer is written against, using public names only."""

from __future__ import annotations

import asyncio
import inspect
import math
import operator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypedDict

import pytest

import trajgraph as tg
from tests._search_helpers import SequencePolicy, line_graph, line_start
from trajgraph.testing.tiny_env import chain_solution, chain_start, deceptive_chain_graph


@dataclass(frozen=True)
class Beam:
    """A beam search written only against tg.* names: keep the `width` best children per depth."""

    width: int = 2
    name: ClassVar[str] = "beam"
    open_ended: ClassVar[bool] = False

    async def search(self, space: tg.Space, root: tg.Node, log: tg.TreeLog) -> tg.Node:
        beam = [root]
        while not all(n.terminal for n in beam):
            nxt: list[tg.Node] = [n for n in beam if n.terminal]
            for node in (n for n in beam if not n.terminal):
                candidates = await space.propose(node, 3)
                children = await space.gather(*(space.expand(node, c) for c in candidates))
                scores = await space.score(children)
                best = max(zip(children, scores), key=lambda cs: cs[1])[0]
                for child, s in zip(children, scores):
                    if child is not best and s < (best.score or 0.0):
                        log.pair(self.name, node, best, child, best.score, s)
                nxt += children
            beam = sorted(nxt, key=lambda n: -(n.score or 0.0))[: self.width]
        log.stats["width"] = self.width
        winner = max(beam, key=lambda n: n.outcome or 0.0)
        winner.reason = "best of the final beam"
        return winner


def test_a_custom_optimizer_on_public_names_runs_records_its_tree_and_pairs(tmp_path):
    store = tg.Store(tmp_path / "runs.db")
    assert isinstance(Beam(), tg.Optimizer)
    policy = SequencePolicy({pos: ["back", "wait", "forward"] for pos in range(4)})
    result = tg.search(line_graph(goal=2, max_turns=4), line_start(), decision_node="policy", optimizer=Beam(),
                       policy=policy, reward=lambda s: s.get("pos", 0) / 2, budget=tg.Budget(policy_calls=60),
                       store=store, task="line-2")
    assert result.status == "succeeded" and result.outcome == 1.0 and result.stats["width"] == 2
    run = store.run(result.run_id)
    assert run.status == "succeeded" and run.metadata["optimizer"] == "beam"
    rows = store.search_nodes(result.run_id)
    assert len(rows) == result.nodes == len(result.space.nodes) > 3
    assert [r.id for r in rows if r.chosen] == [n.id for n in result.best.path()]
    pairs = store.pairs(run_id=result.run_id)
    assert pairs and {p.source for p in pairs} == {"beam"}
    assert all(p.chosen["action"]["action"] == "forward" for p in pairs)  # forward raises pos, the reward


def test_an_optimizer_without_name_or_open_ended_is_refused():
    class Nameless:
        async def search(self, space, root, log):
            return root

    with pytest.raises(tg.ConfigError, match=r"^optimizer Nameless lacks name and open_ended"):
        tg.search(line_graph(), line_start(), decision_node="policy", optimizer=Nameless())
    for opt in (tg.Greedy(), tg.BestOfN(), tg.RRO(), tg.MCTS(), tg.SEAgent()):
        assert isinstance(opt, tg.Optimizer) and isinstance(opt.name, str) and isinstance(opt.open_ended, bool)
    assert tg.BestOfN(n=3).open_ended is False and tg.BestOfN().open_ended is True
    assert tg.SEAgent(anytime=False).open_ended is False and tg.MCTS().open_ended is True


class _HalfReward:
    """A Reward in trajgraph.reward's sense: score/ascore over RewardItems."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def score(self, items):
        self.items += list(items)
        return [0.5 + 0.1 * len(i.turns) for i in items]

    async def ascore(self, items):
        return self.score(items)


def test_as_reward_turns_every_kind_of_reward_into_one_scorer():
    from trajgraph.reward import EnvReward

    model = _HalfReward()
    assert tg.as_reward(None) is None and tg.as_reward(EnvReward()) is None
    rollouts = tg.RolloutValue(n=2)
    assert tg.as_reward(rollouts) is rollouts and isinstance(rollouts, tg.Scorer)
    with pytest.raises(tg.ConfigError, match="^reward object is not a reward"):
        tg.as_reward(object())

    async def values(reward: Any) -> list[float]:
        space = tg.Space(line_graph(goal=2), "policy", reward=reward, policy=SequencePolicy({0: ["forward"], 1: ["forward"]}))
        root = await space.root(line_start())
        child = await space.expand(root, (await space.propose(root, 1))[0])
        return await space.score([root, child])

    assert asyncio.run(values(model)) == [0.5, pytest.approx(0.6)]  # by the text of the turns so far
    assert model.items[1].turns == (("forward", "at 1"),) and model.items[1].task.startswith("reach 3")
    assert asyncio.run(values(lambda s: s["pos"] / 4)) == [0.0, 0.25]  # a function of the state

    async def async_fn(state):
        return state["pos"] / 2

    assert asyncio.run(values(async_fn)) == [0.0, 0.5]
    assert asyncio.run(values(tg.RolloutValue(n=1))) == [1.0, 1.0]  # forward, forward: the goal
    assert asyncio.run(values(None)) == [0.0, 0.0]


def test_rro_keeps_its_monte_carlo_scorer_to_itself():
    policy = SequencePolicy({pos: ["forward"] for pos in range(4)})
    from trajgraph.search.budget import BudgetMeter

    space = tg.Space(line_graph(goal=3), "policy", policy=policy, meter=BudgetMeter(tg.Budget(policy_calls=100)))

    async def go() -> tg.Node:
        root = await space.root(line_start())
        return await tg.RRO(rollouts=2).search(space, root, tg.TreeLog())

    best = asyncio.run(go())
    assert best.outcome == 1.0
    assert space.reward is None  # the space the caller shares is left as given
    assert any(n.value == 1.0 for n in space.nodes if not n.terminal)  # Monte Carlo values were computed


def test_mcts_runs_the_lats_phases_and_reflects_on_failed_trajectories():
    seen_reflections: list[list[str]] = []

    class Recording(SequencePolicy):
        async def propose(self, state, k):
            seen_reflections.append(list(state.get("reflections") or []))
            return await super().propose(state, k)

    sol = chain_solution(5, 3)
    wrong = {p: [a for a in ("left", "right", "up") if a != r][0] for p, r in enumerate(sol)}
    policy = Recording({p: [wrong[p], "jump", sol[p]] for p in range(3)})
    mcts = tg.MCTS(k=3, reflect_with=lambda end: f"avoid {end.action_text}")
    for phase in ("select", "expand", "evaluate", "simulate", "backpropagate", "reflect"):
        assert inspect.iscoroutinefunction(getattr(mcts, phase)) or callable(getattr(mcts, phase))
    result = tg.search(deceptive_chain_graph(depth=3, seed=5), chain_start(), decision_node="policy", optimizer=mcts,
                       policy=policy, budget=tg.Budget(policy_calls=60), repeatable=True)
    assert result.outcome == 1.0
    lessons = result.space.reflections
    assert lessons and all(x.startswith("avoid ") for x in lessons)
    assert any(r for r in seen_reflections[1:])  # later proposals saw the lessons
    # evaluation without a reward model is a simulation per child: values are the outcomes reached
    root = result.space.nodes[0]
    for child in root.children:
        if not child.invalid and child.terminal:
            assert child.score == child.outcome


def test_se_agent_names_the_form_each_operator_ran():
    structural = tg.search(deceptive_chain_graph(depth=4, seed=2), chain_start(), decision_node="policy",
                           optimizer=tg.SEAgent(population=2, generations=1, anytime=False), budget=tg.Budget(policy_calls=40),
                           reward=lambda s: s.get("score", 0.0), repeatable=True)
    assert structural.stats["operators"] == "structural"
    forms = structural.stats["forms"]
    assert structural.stats["generations"] == 1
    assert forms["revision"] == {"llm": 0, "structural": 2} and forms["recombination"] == {"llm": 0, "structural": 2}
    assert forms["refinement"] == {"llm": 0, "structural": 1}
    reasons = [n.reason for n in structural.space.nodes if n.reason.startswith(("revision", "recombination"))]
    assert all("[structural]" in r for r in reasons)


def test_search_and_optimize_share_one_settings_definition():
    fields = [f for f in tg.SearchSettings.__dataclass_fields__]
    for fn in (tg.asearch, tg.search, tg.optimize):
        params = inspect.signature(fn).parameters
        assert all(f in params for f in fields), fn.__name__
    with pytest.raises(tg.ConfigError, match=r"^unknown search setting budgett; the settings are decision_node, "):
        tg.search(line_graph(), line_start(), decision_node="policy", budgett=tg.Budget())
    with pytest.raises(tg.ConfigError, match="unknown search setting"):
        tg.optimize(line_graph(), decision_node="policy", budgett=tg.Budget())
    settings = tg.SearchSettings(decision_node="policy", optimizer=tg.BestOfN(n=1), budget=tg.Budget(policy_calls=9))
    assert tg.search(line_graph(), line_start(), settings=settings).outcome == 1.0
    out = tg.optimize(line_graph(), settings=settings).invoke(line_start())
    assert out["reward"] == 1.0


def test_a_budget_that_names_a_limit_keeps_only_that_limit():
    assert tg.Budget().policy_calls == 64
    assert tg.Budget(wall_time_s=60).policy_calls is None  # it kept a 64-call cap before
    assert tg.Budget(tokens=100).policy_calls is None and tg.Budget(env_steps=5).limited
    assert tg.Budget(policy_calls=10, wall_time_s=5).policy_calls == 10
    assert not tg.Budget(policy_calls=None).limited
    for bad in (dict(wall_time_s=math.nan), dict(policy_calls=math.inf), dict(tokens=math.nan), dict(env_steps=True)):
        with pytest.raises(tg.BudgetError, match="is not a finite number"):
            tg.Budget(**bad)
    for make in (lambda: tg.MCTS(c=math.nan), lambda: tg.RRO(min_rise=math.nan), lambda: tg.BestOfN(success=math.inf),
                 lambda: tg.SEAgent(success=math.nan), lambda: tg.MCTS(success=math.nan)):
        with pytest.raises(tg.ConfigError, match="use a finite number"):
            make()


def test_an_optimized_agent_reports_what_its_search_spent(tmp_path):
    store = tg.Store(tmp_path / "runs.db")
    agent = tg.optimize(line_graph(), decision_node="policy", optimizer=tg.BestOfN(n=2), budget=tg.Budget(policy_calls=20),
                        store=store, result_key="search")
    out = agent.invoke(line_start())
    assert out["reward"] == 1.0
    summary = out["search"]
    assert summary["status"] == "succeeded" and summary["outcome"] == 1.0
    assert summary["spent"]["policy_calls"] == 3 and summary["spent"]["overrun_policy_calls"] == 0
    assert store.run(summary["run_id"]).kind == "search"
    plain = tg.optimize(line_graph(), decision_node="policy", optimizer=tg.BestOfN(n=1), budget=tg.Budget(policy_calls=20))
    assert "search" not in plain.invoke(line_start())
    custom = [c for c in plain.stream(line_start(), stream_mode="custom")]
    assert len(custom) == 1 and custom[0]["trajgraph_search"]["spent"]["policy_calls"] == 3


class _ValidState(TypedDict, total=False):
    pos: int
    valid: list[str]
    action: str
    history: Annotated[list, operator.add]
    reward: float


def test_admissible_actions_are_checked_under_the_key_the_search_names():
    from langgraph.graph import END, START, StateGraph

    def env(state):
        pos = state.get("pos", 0) + (1 if state["action"] == "forward" else 0)
        return {"pos": pos, "reward": 1.0 if pos >= 2 else None, "history": [state["action"]]}

    g = StateGraph(_ValidState)
    g.add_node("policy", lambda s: {"action": "forward"})
    g.add_node("env", env)
    g.add_edge(START, "policy")
    g.add_edge("policy", "env")
    g.add_conditional_edges("env", lambda s: END if s.get("reward") else "policy", ["policy", END])
    graph = g.compile()
    policy = SequencePolicy({0: ["fly", "forward"], 1: ["forward"]})
    start = {"pos": 0, "valid": ["forward", "wait"], "history": []}
    checked = tg.search(graph, start, decision_node="policy", optimizer=tg.RRO(k_max=2), policy=policy,
                        actions_key="valid", budget=tg.Budget(policy_calls=20), reward=lambda s: s.get("pos", 0) / 2)
    fly = [n for n in checked.space.nodes if n.action_text == "fly"]
    assert fly and fly[0].invalid and "not an admissible action: 'fly'" in fly[0].reason
    unchecked = tg.search(graph, start, decision_node="policy", optimizer=tg.RRO(k_max=2),
                          policy=SequencePolicy({0: ["fly", "forward"], 1: ["forward"]}),
                          budget=tg.Budget(policy_calls=20), reward=lambda s: s.get("pos", 0) / 2)
    assert not [n for n in unchecked.space.nodes if n.action_text == "fly"][0].invalid  # "actions" is not the key here
