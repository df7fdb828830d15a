"""Searches against tasks whose optimum is computed exactly (issue 19), and the pieces
that get them there: transpositions, widening past repeats, SE-Agent's operators,
the value source, and policy priors. Seeded, repeatable, correctness only."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from _search_helpers import line_graph, line_start

from trajgraph.search.budget import Budget, BudgetMeter
from trajgraph.search.optimize import search
from trajgraph.search.optimizers import MCTS, RRO, SEAgent
from trajgraph.search.optimizers.se_agent import follow, without_detours
from trajgraph.search.space import Space
from trajgraph.testing.known_optimum import KeyMazeSuite, biased_node, optimum


def _brute_force(task) -> float:
    """Every action sequence, played through the step function: the optimum by enumeration."""
    best = 0.0
    frontier = [(task.start, False, 0)]
    while frontier:
        pos, key, turn = frontier.pop()
        for a in task.admissible(pos):
            p, k, t, done, credit = task.step(pos, key, turn, a)
            if done:
                best = max(best, credit)
            else:
                frontier.append((p, k, t))
    return best


def test_the_generated_optimum_is_exact():
    for task in KeyMazeSuite().tasks("test", 3):
        assert optimum(task) == pytest.approx(_brute_force(task)) == 1.0
        # the oracle's trajectory reaches it in the stated solution length
        graph, _ = task.make_graph(lambda s, t=task: {"action": t.oracle(s)})
        final = graph.invoke(task.input)
        assert final["reward"] == 1.0 and len(final["history"]) == task.solution_length


@pytest.mark.parametrize("optimizer", [RRO(group=1, k_max=4), MCTS(k=3), SEAgent(population=3, generations=3)],
                         ids=lambda o: o.name)
def test_searches_reach_the_known_optimum_at_20x_the_solution_length(optimizer):
    tasks = KeyMazeSuite().tasks("test", 6)
    reached = 0
    for i, task in enumerate(tasks):
        graph, _ = task.make_graph(biased_node(task, seed=i))
        result = search(graph, task.input, decision_node="policy", optimizer=optimizer, outcome=task.outcome, partial=task.partial,
                        budget=Budget(policy_calls=20 * task.solution_length), repeatable=True)
        assert result.spent.policy_calls <= 20 * task.solution_length
        assert result.stats["value_source"] == "partial outcome"
        reached += result.outcome == pytest.approx(optimum(task))
    assert reached >= 5, reached


def test_the_same_action_is_expanded_once_and_transpositions_are_counted():
    def run(transpositions: bool):
        space = Space(line_graph(goal=3), "policy", meter=BudgetMeter(Budget(policy_calls=50)), repeatable=True,
                      transpositions=transpositions)

        async def go():
            root = await space.root(line_start())
            a = await space.expand(root, {"action": "forward"})
            b = await space.expand(root, {"action": "forward"})
            back = await space.expand(a, {"action": "back"})
            again = await space.expand(back, {"action": "forward"})  # position 1 again: a's state
            return a, b, again

        return space, *asyncio.run(go())

    space, a, b, again = run(True)
    assert a is b and space.reused == 1 and again.twin is a and space.merged == 1
    space, a, b, again = run(False)
    assert a is not b and again.twin is None and space.merged == 0


def test_a_state_key_drops_noise_and_merges_more():
    task = KeyMazeSuite().tasks("test", 1)[0]
    graph, _ = task.make_graph(biased_node(task, seed=0))
    kw = dict(decision_node="policy", optimizer=MCTS(k=3), outcome=task.outcome, partial=task.partial,
              budget=Budget(policy_calls=60), repeatable=True)
    plain = search(graph, task.input, **kw)
    keyed = search(graph, task.input, state_key=lambda s: (s["pos"], s["key"]), **kw)
    assert keyed.stats["merged_states"] > plain.stats["merged_states"]


def _trap_node(seed: int):
    """The chain's decision node proposing the trap 90% of the time."""
    from trajgraph.testing import tiny_env

    rng = random.Random(seed)
    sol = tiny_env.chain_solution(seed, 4)

    def policy(state):
        return {"action": "jump" if rng.random() < 0.9 else rng.choice(("left", "right", "up"))}

    return sol, policy


@pytest.mark.parametrize("make", [lambda w: MCTS(k=3, widen=w), lambda w: RRO(group=1, k_max=4, widen=w)], ids=["mcts", "rro"])
def test_widening_reaches_actions_a_node_that_proposes_the_trap_90_percent_never_offers(make):
    from trajgraph.testing import tiny_env

    found = {}
    for widen in ("value", "repeats"):
        wins = 0
        for seed in range(4):
            sol, node = _trap_node(seed)
            graph = tiny_env.env_loop_graph(tiny_env.chain_env_node(sol), node).compile()
            result = search(graph, tiny_env.chain_start(), decision_node="policy", optimizer=make(widen),
                            partial=lambda s: s.get("score"), budget=Budget(policy_calls=80), repeatable=True)
            wins += result.outcome == 1.0
        found[widen] = wins
    assert found["value"] == 4 and found["repeats"] < 4, found


def test_refinement_cuts_detours_back_to_a_seen_state():
    detour = [{"action": a} for a in ("forward", "back", "forward", "wait", "forward", "forward")]

    def play(transpositions: bool):
        space = Space(line_graph(goal=3, max_turns=9), "policy", meter=BudgetMeter(Budget(policy_calls=50)), repeatable=True,
                      transpositions=transpositions)

        async def go():
            root = await space.root(line_start())
            member = await follow(space, root, detour)
            return member, await follow(space, root, without_detours(member) or [])

        return asyncio.run(go())

    # each node its own: the member keeps its detours, and refinement cuts them
    member, refined = play(transpositions=False)
    assert [a["action"] for a in without_detours(member) or []] == ["forward", "forward", "forward"]
    assert refined.outcome == 1.0 and refined.depth == 3 < member.depth
    # with transpositions a state reached again grows where it was first reached: the
    # detour is cut as it is walked, and there is nothing left for refinement to cut
    member, _ = play(transpositions=True)
    assert member.outcome == 1.0 and member.depth == 3 and without_detours(member) is None


def test_se_agent_fitness_rises_across_generations():
    task = KeyMazeSuite().tasks("test", 2)[1]
    graph, _ = task.make_graph(biased_node(task, seed=1))
    result = search(graph, task.input, decision_node="policy", optimizer=SEAgent(population=3), outcome=task.outcome,
                    partial=task.partial, budget=Budget(policy_calls=20 * task.solution_length), repeatable=True)
    fit = result.stats["fitness_per_generation"]
    assert len(fit) >= 2 and fit[-1] > fit[0] and all(b >= a for a, b in itertools.pairwise(fit))


def test_without_a_reward_model_the_value_source_is_chosen_and_logged():
    kw = dict(decision_node="policy", budget=Budget(policy_calls=30), repeatable=True)
    rollouts = search(line_graph(goal=3), line_start(), optimizer=RRO(), **kw)
    partial = search(line_graph(goal=3), line_start(), optimizer=RRO(), partial=lambda s: s.get("pos", 0) / 3, **kw)
    model = search(line_graph(goal=3), line_start(), optimizer=MCTS(), reward=lambda s: 0.5, **kw)
    assert rollouts.stats["value_source"].startswith("Monte Carlo rollouts")
    assert partial.stats["value_source"] == "partial outcome"
    assert model.stats["value_source"] == "reward model"


class _PriorPolicy:
    """Proposes 'wait' always, and says 'forward' is what it believes in (via scores)."""

    async def propose(self, state, k):
        return [{"action": "wait"}] * k

    def scores(self, state, actions):
        return [3.0 if a == "forward" else 0.0 for a in actions]


def test_priors_from_scores_reach_candidates_and_puct_orders_the_tree():
    space = Space(line_graph(goal=3), "policy", policy=_PriorPolicy(), meter=BudgetMeter(Budget(policy_calls=50)), repeatable=True)

    async def go():
        root = await space.root(line_start())
        return await space.propose(root, 2), await space.admissible(root)

    proposed, admissible = asyncio.run(go())
    assert proposed[0].text == "wait" and proposed[0].prior == pytest.approx(1 / (2 + 2.718281828 ** 3), rel=1e-3)
    assert admissible[0].text == "forward" and admissible[0].prior > 0.8  # most probable first
    result = search(line_graph(goal=3), line_start(), decision_node="policy", optimizer=MCTS(k=2), policy=_PriorPolicy(),
                    reward=lambda s: 0.0, budget=Budget(policy_calls=40), repeatable=True)
    assert result.outcome == 1.0  # the prior's action is tried and taken by PUCT though never proposed
