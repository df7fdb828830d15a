"""Each optimizer's defining behaviour, driven by scripted policies and rewards."""

from __future__ import annotations

import asyncio
import math

import pytest

from tests._search_helpers import SequencePolicy, line_graph, line_start
from trajgraph.errors import BudgetError, ConfigError
from trajgraph.search._write import TreeLog
from trajgraph.search.budget import Budget, BudgetMeter
from trajgraph.search.optimize import optimize, search
from trajgraph.search.optimizers import MCTS, RRO, BestOfN, Greedy, SEAgent
from trajgraph.search.optimizers.mcts import backpropagate, uct
from trajgraph.search.optimizers.se_agent import actions_of, follow
from trajgraph.search.space import Node, Space
from trajgraph.testing.tiny_env import chain_solution, chain_start, deceptive_chain_graph


def _chain_policy(seed: int, depth: int, wrong_first: int) -> SequencePolicy:
    """At every room: `wrong_first` wrong doors, then the right one."""
    sol = chain_solution(seed, depth)
    script = {}
    for pos, right in enumerate(sol):
        wrong = [a for a in ("left", "right", "up") if a != right]
        script[pos] = wrong[:wrong_first] + [right]
    return SequencePolicy(script)


def test_rro_stops_at_first_rising_candidate_and_emits_pairs():
    depth = 3
    policy = _chain_policy(seed=0, depth=depth, wrong_first=1)
    result = search(deceptive_chain_graph(depth=depth, seed=0), chain_start(), decision_node="policy",
                    optimizer=RRO(group=1, k_max=4), policy=policy, reward=lambda s: s.get("score", 0.0),
                    budget=Budget(policy_calls=100))
    assert result.outcome == 1.0
    # one wrong door (score 0, not rising) then the right one (rises): 2 candidates per step
    assert result.stats["candidates_per_step"] == [2, 2, 2]
    assert policy.calls == 6


def test_rro_widens_when_nothing_rises_and_takes_best():
    depth = 2
    policy = _chain_policy(seed=3, depth=depth, wrong_first=2)
    sol = chain_solution(3, depth)
    # flat reward: the right door scores 0.5 = previous, so nothing *rises*; wrong doors end at 0
    space_reward = lambda s: 0.5  # noqa: E731
    meter = BudgetMeter(Budget(policy_calls=100))
    space = Space(deceptive_chain_graph(depth=depth, seed=3), "policy", policy=policy, reward=space_reward, meter=meter)
    log = TreeLog()

    async def go():
        root = await space.root(chain_start())
        return await RRO(group=1, k_max=3).search(space, root, log)

    best = asyncio.run(go())
    assert [n.action["action"] for n in best.path()[1:]] == sol
    assert log.stats["candidates_per_step"] == [3, 3]  # widened to k_max at both steps
    # the chosen door beat both wrong ones at each decision point
    assert len(log.pairs) == 4
    for p in log.pairs:
        right = sol[p["at"].depth]
        assert p["chosen"].action["action"] == right and p["rejected"].action["action"] != right
        assert p["chosen_score"] == (1.0 if p["at"].depth == depth - 1 else 0.5) and p["rejected_score"] == 0.0


def test_rro_stops_widening_when_the_policy_repeats_itself():
    # a deterministic agent proposes the same door every time: "forward" never rises
    # (flat reward), and a budget without a call limit must not spin on the duplicates
    # (the time limit only turns a regression into a failure instead of a hang)
    policy = SequencePolicy({pos: ["forward"] for pos in range(4)})
    result = search(line_graph(goal=3), line_start(), decision_node="policy", optimizer=RRO(group=1, k_max=3, widen="repeats"),
                    policy=policy, reward=lambda s: 0.5, budget=Budget(policy_calls=None, wall_time_s=20))
    assert result.outcome == 1.0
    assert result.stats["candidates_per_step"] == [1, 1, 1]
    assert policy.calls == 6 + 6 + 1  # 2 x k_max samples where nothing rises; the goal step succeeds at once
    # widening by value (the default): the state's admissible actions fill in for the repeats
    policy = SequencePolicy({pos: ["forward"] for pos in range(4)})
    result = search(line_graph(goal=3), line_start(), decision_node="policy", optimizer=RRO(group=1, k_max=3),
                    policy=policy, reward=lambda s: 0.5, budget=Budget(policy_calls=None, wall_time_s=20))
    assert result.outcome == 1.0 and result.stats["candidates_per_step"][0] == 3


def test_rro_takes_a_candidate_whose_value_is_already_at_success():
    # Monte Carlo values of a perfect policy are 1.0 at every step: nothing can rise above
    # the previous 1.0, and RRO must not widen (it spent the whole budget on repeats before)
    policy = SequencePolicy({pos: ["forward"] for pos in range(4)})
    result = search(line_graph(goal=3), line_start(), decision_node="policy", optimizer=RRO(group=1, k_max=4, rollouts=2),
                    policy=policy, budget=Budget(policy_calls=200))
    assert result.outcome == 1.0
    assert result.stats["candidates_per_step"] == [1, 1, 1]
    assert all(n.reason.startswith("first candidate at success") for n in result.best.path()[1:3])
    # root value 3: its first rollout reaches 1.0, which no second can beat; then one sample a step,
    # valued free by that rollout, which finished through it (15 when every value took 2 new rollouts; 29 before)
    assert result.spent.policy_calls == 3 + 1 + 1 + 1


def test_open_ended_searches_refuse_a_budget_without_limits():
    for open_ended in (BestOfN(), MCTS()):
        with pytest.raises(BudgetError, match=rf"^{type(open_ended).__name__} searches until the budget is spent.*no limit"):
            search(line_graph(), line_start(), decision_node="policy", optimizer=open_ended, budget=Budget(policy_calls=None))
    result = search(line_graph(), line_start(), decision_node="policy", optimizer=BestOfN(n=2),
                    budget=Budget(policy_calls=None))
    assert result.outcome == 1.0 and result.stats["trajectories"] == 1  # the first one reached the goal


@pytest.mark.parametrize("make", [lambda: RRO(k_max=0), lambda: RRO(group=0), lambda: MCTS(k=0), lambda: MCTS(c=-0.5),
                                  lambda: SEAgent(population=0), lambda: BestOfN(n=0), lambda: MCTS(k=2.5)])  # type: ignore[arg-type]  # a float k on purpose
def test_settings_that_would_do_nothing_are_refused_at_construction(make):
    with pytest.raises(ConfigError, match=r"^(RRO|MCTS|SEAgent|BestOfN)\("):
        make()


def test_an_optimizer_by_name_and_an_unknown_name():
    result = search(line_graph(), line_start(), decision_node="policy", optimizer="best-of-n", budget=Budget(policy_calls=8))
    assert result.outcome == 1.0 and "trajectories" in result.stats  # BestOfN ran
    with pytest.raises(ConfigError, match="unknown optimizer 'beam'; choose from greedy, best-of-n, rro, mcts, se-agent, apprentice"):
        search(line_graph(), line_start(), decision_node="policy", optimizer="beam")
    with pytest.raises(ConfigError, match="has no search"):
        search(line_graph(), line_start(), decision_node="policy", optimizer=object())
    with pytest.raises(ConfigError, match="unknown optimizer"):  # at build time, not at the first invoke
        optimize(line_graph(), decision_node="policy", optimizer="beam")


class _NoIdeas:
    name = "no-ideas"

    async def propose(self, state, k):
        return []  # a provider that answered with no choices


@pytest.mark.parametrize("optimizer", [Greedy(), BestOfN(n=2), RRO(), MCTS(), SEAgent()], ids=lambda o: o.name)
def test_a_policy_that_proposes_nothing_gives_invalid_candidates_not_a_crash(optimizer):
    result = search(line_graph(), line_start(), decision_node="policy", optimizer=optimizer, policy=_NoIdeas(),
                    budget=Budget(policy_calls=10))
    # no finished valid trajectory: the answer is not an invalid node, and the search says so
    assert result.status == "unfinished" and not result.best.invalid and not result.best.terminal
    assert result.outcome is None and "unfinished" in result.finish
    invalid = [n for n in result.space.nodes if n.invalid]
    assert invalid and all("proposed no action" in n.observation for n in invalid)


def _node(i: int, parent: Node | None = None) -> Node:
    n = Node(id=i, config={}, state={}, parent=parent, depth=0 if parent is None else parent.depth + 1)
    if parent is not None:
        parent.children.append(n)
    return n


def test_mcts_uct_and_backpropagation_match_hand_computation():
    root = _node(0)
    a, b = _node(1, root), _node(2, root)
    backpropagate(a, 0.2)
    backpropagate(b, 0.8)
    assert root.visits == 2 and root.value == pytest.approx(0.5)
    a1 = _node(3, a)
    backpropagate(a1, 1.0)  # a: mean(0.2, 1.0) = 0.6; root: mean(0.2, 0.8, 1.0)
    assert a.visits == 2 and a.value == pytest.approx(0.6)
    assert root.visits == 3 and root.value == pytest.approx(2.0 / 3.0)
    c = 1.0
    assert uct(a, root.visits, c) == pytest.approx(0.6 + math.sqrt(math.log(3) / 2))
    assert uct(b, root.visits, c) == pytest.approx(0.8 + math.sqrt(math.log(3) / 1))
    assert MCTS(k=2, c=c).select(root) is b  # 0.8 + 1.048 > 0.6 + 0.741
    assert MCTS(k=2, c=0.0).select(root) is b
    assert MCTS(k=3, c=c).select(root) is root  # short of k distinct actions: widen first
    fresh = _node(4, root)
    assert uct(fresh, root.visits, c) == math.inf and MCTS(k=2, c=c).select(root) is fresh


def test_mcts_backpropagates_through_a_real_search():
    result = search(deceptive_chain_graph(depth=3, seed=1), chain_start(), decision_node="policy",
                    optimizer=MCTS(k=2), reward=lambda s: s.get("score", 0.0), budget=Budget(policy_calls=30))
    space = result.space
    root = space.nodes[0]
    for node in space.nodes:
        live = [c for c in node.children if not c.invalid and c.visits]
        if live and node is not root:
            # a node's visits are its own evaluation plus its children's
            assert node.visits == 1 + sum(c.visits for c in live) or node.terminal
    assert root.visits == sum(c.visits for c in root.children if not c.invalid)


def test_se_agent_recombination_splices_both_parents():
    policy = SequencePolicy({0: ["forward"], 1: ["forward"], 2: ["forward"]})
    # transpositions off: parent a keeps its loops and fails at the turn limit (with them its
    # steps back would be cut as walked); states still have keys, so a shared state is found
    space = Space(line_graph(goal=3), "policy", policy=policy, meter=BudgetMeter(Budget(policy_calls=100)), transpositions=False)

    async def go():
        root = await space.root(line_start())
        a = await follow(space, root, [{"action": x} for x in ("wait", "forward", "back", "back", "wait", "wait")])
        b = await follow(space, root, [{"action": x} for x in ("forward", "forward", "forward")])
        child = await SEAgent().recombine(space, a, b, __import__("random").Random(0))
        return a, b, child

    a, b, child = asyncio.run(go())
    acts = lambda n: [x["action"] for x in actions_of(n)]  # noqa: E731
    assert acts(a)[:2] == ["wait", "forward"] and a.outcome == 0.0
    assert acts(b) == ["forward"] * 3 and b.outcome == 1.0
    # a's prefix up to the shared state (position 1) + b's suffix from there
    assert acts(child) == ["wait", "forward", "forward", "forward"]
    assert child.outcome == 1.0
    assert "prefix of" in child.reason and "shared state" in child.reason


@pytest.mark.parametrize("optimizer", [Greedy(), BestOfN(), RRO(), MCTS(), SEAgent()], ids=lambda o: o.name)
def test_budget_stops_every_optimizer(optimizer):
    # a perfect policy needs 8 calls to finish; the budget allows 5
    g = deceptive_chain_graph(depth=8, skill=1.0, trap=0.0, seed=2)
    result = search(g, chain_start(), decision_node="policy", optimizer=optimizer, budget=Budget(policy_calls=5),
                    reward=lambda s: s.get("score", 0.0))
    spent = result.spent
    assert spent.stopped_by == "policy_calls"
    assert spent.policy_calls <= 5 and spent.overrun_policy_calls == 0  # a bound: no finish past it
    assert not result.best.terminal and result.status == "unfinished"  # 8 decisions cannot fit in 5 calls
    assert result.finish.startswith("unfinished: the budget (policy_calls) ran out")


def test_budget_stops_on_env_steps_and_tokens_and_rejects_zero():
    g = deceptive_chain_graph(depth=8, skill=1.0, trap=0.0, seed=2)
    r = search(g, chain_start(), decision_node="policy", optimizer=MCTS(), budget=Budget(policy_calls=None, env_steps=4, finish=False))
    assert r.spent.stopped_by == "env_steps" and r.spent.env_steps <= 4 + 3
    with pytest.raises(BudgetError):
        Budget(policy_calls=0)
    with pytest.raises(BudgetError):
        Budget(tokens=-1)


RATES_SEEDS = range(20)


def _success_rate(optimizer, budget: int) -> tuple[float, float]:
    wins, calls = 0, 0
    for seed in RATES_SEEDS:
        r = search(deceptive_chain_graph(depth=5, skill=0.6, trap=0.25, seed=seed), chain_start(f"chain-{seed}"),
                   decision_node="policy", optimizer=optimizer, budget=Budget(policy_calls=budget),
                   reward=lambda s: s.get("score", 0.0), repeatable=True)
        wins += (r.outcome or 0.0) >= 1.0
        calls += r.spent.policy_calls
    return wins / len(RATES_SEEDS), calls / len(RATES_SEEDS)


def test_search_beats_greedy_on_the_deceptive_chain():
    """Greedy succeeds with probability 0.6**5 ≈ 8%; at 40 policy calls each search
    optimizer must succeed at least 45% of the time and 30 points above greedy."""
    greedy, _ = _success_rate(Greedy(), 40)
    assert greedy <= 0.25
    for opt in (BestOfN(), RRO(k_max=4), MCTS(k=3), SEAgent(population=4)):
        rate, calls = _success_rate(opt, 40)
        assert rate >= 0.45 and rate >= greedy + 0.3, (opt.name, rate, greedy)
        assert calls <= 40 + 8  # budget plus at most one greedy finish


def test_se_agent_llm_guided_revision_re_executes_the_revised_plan():
    from trajgraph.testing import FakeToolModel

    depth = 4
    sol = chain_solution(11, depth)
    prompts = []

    def critic(messages, rng):
        prompts.append(messages[-1].content)
        return "The first trajectory fell through the floor at step 1.\n" + "\n".join(f"ACTION: {a}" for a in sol)

    # a policy that never finds the way alone: always the trap
    never = SequencePolicy({i: ["jump"] for i in range(depth)})
    result = search(deceptive_chain_graph(depth=depth, seed=11), chain_start(), decision_node="policy",
                    optimizer=SEAgent(population=2, generations=2, llm=FakeToolModel(respond=critic)),
                    policy=never, budget=Budget(policy_calls=40))
    assert result.outcome == 1.0
    assert [n.action["action"] for n in result.best.path()[1:]] == sol
    assert result.best.reason.startswith("revision [llm]")
    assert result.stats["operators"] == "llm-guided" and result.stats["forms"]["revision"]["llm"] >= 1
    assert prompts and "Trajectory A" in prompts[0] and "jump" in prompts[0]


class _FlatModel:
    """A learned reward model in trajgraph.reward's sense (score/ascore over RewardItems)."""

    def score(self, items):
        return [0.5 for _ in items]

    async def ascore(self, items):
        return self.score(items)


@pytest.mark.parametrize("make", [lambda w: RRO(group=1, k_max=3, widen=w), lambda w: MCTS(k=3, widen=w),
                                  lambda w: SEAgent(population=2, generations=1, widen=w)], ids=["rro", "mcts", "se-agent"])
def test_admissible_fill_ins_wait_for_a_value_that_is_not_a_learned_model(make):
    # the agent always says "wait"; "forward" and "back" are admissible. A learned reward model
    # is trained on the agent's own trajectories, so widen="auto" does not fill in where one
    # values the candidates (on TextWorld its picks among fill-ins cost RRO 3 of 8 games);
    # a function of the state, or widen="value", does
    def tried(widen: str, reward: object) -> set[str]:
        policy = SequencePolicy({pos: ["wait"] for pos in range(8)})
        result = search(line_graph(goal=3), line_start(), decision_node="policy", optimizer=make(widen), policy=policy,
                        reward=reward, budget=Budget(policy_calls=30), transpositions=False)  # no loop is cut: samples only
        assert result.space is not None
        return {n.action_text for n in result.space.nodes if n.depth >= 1 and not n.invalid}

    assert tried("auto", _FlatModel()) == {"wait"}
    assert tried("repeats", lambda s: 0.5) == {"wait"}
    assert tried("auto", lambda s: 0.5) == {"forward", "back", "wait"}
    assert tried("value", _FlatModel()) == {"forward", "back", "wait"}
    with pytest.raises(ConfigError, match="widen"):
        make("sometimes")


def test_mcts_pairs_under_self_consistency_follow_outcomes_not_votes():
    # the ReAct calculator agent's own model calls add or multiply (half each): without a reward
    # model MCTS values new children by their vote share, but its preference pairs must say
    # what worked: multiply(3, 4) answers 12 (outcome 1), add does not (outcome 0)
    from tests._export_store import _answered_12, _noisy_calculator
    from trajgraph.testing import FakeToolModel, react_calculator_agent

    result = search(react_calculator_agent(FakeToolModel(respond=_noisy_calculator, seed=1)),
                    {"messages": [("user", "what is 3 times 4?")]}, decision_node="agent", optimizer=MCTS(k=3),
                    budget=Budget(policy_calls=12), outcome=_answered_12, store=(store := _memory_store()), task="times")
    assert result.stats["value_source"] == "self-consistency + simulation" and result.outcome == 1.0
    pairs = store.pairs(run_id=result.run_id)
    assert pairs, "MCTS wrote no preference pair"
    for p in pairs:
        assert p.chosen["text"].startswith("multiply(") and p.rejected["text"].startswith("add("), (p.chosen, p.rejected)
        assert p.chosen_score == 1.0 and p.rejected_score == 0.0


def _memory_store():
    import trajgraph as tg

    return tg.Store(":memory:")


def test_se_agent_keeps_half_the_budget_for_evolution_when_rollouts_are_long():
    # each rollout of an agent that only waits takes the whole episode (6 calls): a population of 4
    # would spend 24 calls before any generation; past half the budget no more initial rollouts start
    def initial_rollouts(calls: int) -> int:
        policy = SequencePolicy({pos: ["wait"] for pos in range(8)})
        result = search(line_graph(goal=3), line_start(), decision_node="policy", optimizer=SEAgent(population=4, generations=1),
                        policy=policy, budget=Budget(policy_calls=calls), repeatable=True, transpositions=False)
        assert result.space is not None
        return sum(1 for n in result.space.nodes if n.terminal and (n.reason or "").startswith("initial rollout"))

    assert initial_rollouts(16) == 2  # two side by side, then 12 of 16 calls spent: evolve with them
    assert initial_rollouts(100) == 4  # short rollouts against the budget: the whole population
