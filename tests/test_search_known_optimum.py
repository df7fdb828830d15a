"""Searches against tasks whose optimum is computed exactly (issue 19), and the pieces
that get them there: transpositions, widening past repeats, SE-Agent's operators,
the value source, and policy priors. Seeded, repeatable, correctness only."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from _search_helpers import SequencePolicy, line_graph, line_start

from trajgraph.search.budget import Budget, BudgetMeter
from trajgraph.search.optimize import search
from trajgraph.search.optimizers import MCTS, RRO, BestOfN, Greedy, SEAgent
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


def test_a_state_key_replaces_the_learned_default():
    from trajgraph.store.json import canonical_key

    task = KeyMazeSuite().tasks("test", 1)[0]
    graph, _ = task.make_graph(biased_node(task, seed=0))

    async def keys(**kw):
        space = Space(graph, "policy", meter=BudgetMeter(Budget(policy_calls=20)), repeatable=True, **kw)
        root = await space.root(task.input)
        moves = task.admissible(task.start)
        children = [await space.expand(root, {"action": a}) for a in moves]
        return [root, *children]

    keyed = asyncio.run(keys(state_key=lambda s: s["pos"]))
    assert [n.key for n in keyed] == [canonical_key(n.state["pos"]) for n in keyed]
    plain = asyncio.run(keys())
    assert all(n.key != canonical_key(n.state["pos"]) for n in plain)


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


def test_outcome_only_mcts_values_by_self_consistency_and_keeps_the_best_below():
    # a deterministic space, no reward model, no partial outcome: LATS' vote share + one simulation, max backup
    policy = SequencePolicy({0: ["forward", "forward", "back"], 1: ["forward"], 2: ["wait", "forward"], 3: ["forward"]})
    result = search(line_graph(goal=3, max_turns=6), line_start(), decision_node="policy", optimizer=MCTS(k=3), policy=policy,
                    budget=Budget(policy_calls=40), repeatable=True)
    assert result.stats["value_source"] == "self-consistency + simulation"
    assert result.outcome == 1.0
    root = result.space.nodes[0]
    forward = next(ch for ch in root.children if ch.action["action"] == "forward")
    # two of the three samples chose it, one chose back, none wait: shares (2+1, 1+1, 0+1) / 6, add-one smoothed
    assert forward.prior == pytest.approx(3 / 6)
    assert sorted(ch.prior for ch in root.children) == pytest.approx([1 / 6, 2 / 6, 3 / 6])
    assert forward.value == 1.0  # max backup: the best outcome found below, not a mean with the failures


def test_best_of_n_never_samples_a_scored_trajectory_again_and_stops_when_all_are_seen():
    # two turns, three actions, the goal out of reach: 9 trajectories, fewer once
    # transpositions merge equal states; a policy that always says "forward" would repeat one
    policy = SequencePolicy({pos: ["forward"] for pos in range(4)})
    result = search(line_graph(goal=3, max_turns=2), line_start(), decision_node="policy", optimizer=BestOfN(), policy=policy,
                    budget=Budget(policy_calls=200), repeatable=True)
    space = result.space
    ends = {tuple(a.action["action"] for a in n.path()[1:]) for n in space.nodes if n.terminal}
    # every end reachable: forward or back (wait at the start is back's state, a transposition) then any move
    assert ends == {(a, b) for a in ("forward", "back") for b in ("forward", "back", "wait")}
    # one trajectory each, but for the last: "wait" at the start shows it is back's state only once expanded
    assert result.stats["trajectories"] == len(ends) + 1
    assert result.stats["exhausted"] and space.is_closed(space.nodes[0])
    assert result.stats["diverted_rollout_steps"] > 0 and result.spent.policy_calls < 200


def test_greedy_keeps_its_loops_and_a_state_reached_sooner_stands_for_it():
    # greedy is the agent as it is: forward/back forever ends at the turn limit kept in the history
    policy = SequencePolicy({0: ["forward"], 1: ["back"]})
    result = search(line_graph(goal=3, max_turns=4), line_start(), decision_node="policy", optimizer=Greedy(), policy=policy,
                    budget=Budget(policy_calls=20), repeatable=True)
    assert result.best.depth == 4 and result.outcome == 0.0
    # a state first reached at depth 2, then at depth 1: the sooner node becomes the state's node
    space = Space(line_graph(goal=3), "policy", meter=BudgetMeter(Budget(policy_calls=50)), repeatable=True)

    async def go():
        root = await space.root(line_start())
        late = await space.expand(await space.expand(root, {"action": "wait"}), {"action": "forward"})
        soon = await space.expand(root, {"action": "forward"})
        return late, soon

    late, soon = asyncio.run(go())
    assert late.key == soon.key and late.depth == 2 and soon.depth == 1
    assert soon.twin is None and space.table[soon.key] is soon


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


# -- SE-Agent's LLM-guided operators, through litellm to a loopback OpenAI-compatible server --


class _Critic:
    """Answers /chat/completions like a model would: a revised or merged plan ending in
    `ACTION:` lines, or the population's lesson; `plan=None` answers with no plan."""

    def __init__(self, plan: list[str] | None) -> None:
        self.plan = plan
        self.prompts: list[str] = []

    def reply(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if "what separates" in prompt:
            return "The better trajectories never jump for coins; they take the door that advances."
        if self.plan is None:
            return "I am not sure what went wrong."
        return "It went wrong where it jumped.\n" + "\n".join(f"ACTION: {a}" for a in self.plan)


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    critic = _Critic(None)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = critic.reply(body["messages"][-1]["content"])
            data = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                               "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")
    base = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", base)
    monkeypatch.setenv("OPENAI_API_BASE", base)
    try:
        yield critic
    finally:
        httpd.shutdown()
        httpd.server_close()


def _jumping_chain(depth: int = 4, seed: int = 7):
    """A deceptive chain whose own decision node always takes the trap: alone it never finishes better than 0.3."""
    from trajgraph.envloop import env_loop_graph
    from trajgraph.testing.chain import chain_env_node, chain_solution, chain_start

    sol = chain_solution(seed, depth)
    graph = env_loop_graph(chain_env_node(sol), lambda state: {"action": "jump"}, "jumping_chain").compile()
    return graph, chain_start(), sol


def test_se_agent_llm_operators_run_through_litellm_against_a_loopback_model(loopback):
    graph, start, sol = _jumping_chain()
    loopback.plan = sol
    result = search(graph, start, decision_node="policy", optimizer=SEAgent(population=2, generations=2, llm="openai/loopback-critic"),
                    budget=Budget(policy_calls=30), repeatable=True)
    # the critique's plan is re-executed through the graph: the optimum the agent alone never reaches
    assert result.outcome == 1.0 and [n.action["action"] for n in result.best.path()[1:]] == sol
    assert result.best.reason.startswith("revision [llm]")
    assert result.stats["operators"] == "llm-guided" and result.stats["forms"]["revision"]["llm"] >= 1
    # the prompts carry the trajectories the paper's operators reason over
    assert any("Critique this trajectory" in p and "jump" in p for p in loopback.prompts)


def test_se_agent_llm_forms_for_all_three_operators_and_the_structural_fallback(loopback):
    graph, start, sol = _jumping_chain()
    loopback.plan = None  # no usable plan: revision and recombination fall back to their structural forms
    result = search(graph, start, decision_node="policy", optimizer=SEAgent(population=2, generations=1, anytime=False,
                                                                              llm="openai/loopback-critic"),
                    budget=Budget(policy_calls=30), repeatable=True)
    forms = result.stats["forms"]
    assert forms["revision"] == {"llm": 0, "structural": 2} and forms["recombination"] == {"llm": 0, "structural": 2}
    # refinement's LLM form summarised the population into guidance that later proposals see
    assert forms["refinement"]["llm"] == 1
    assert result.space.reflections == ["The better trajectories never jump for coins; they take the door that advances."]
    assert any("Combine the strengths" in p for p in loopback.prompts)


def test_rro_stops_widening_a_point_once_every_listed_action_is_tried():
    # one decision, three listed actions, nothing rises (the goal is out of reach): RRO widens
    # through the fill-ins, and once all three are tried a further sample could only repeat one
    policy = SequencePolicy({0: ["wait"]})
    result = search(line_graph(goal=3, max_turns=1), line_start(), decision_node="policy", optimizer=RRO(k_max=5),
                    policy=policy, budget=Budget(policy_calls=40), repeatable=True)
    ends = {n.action["action"] for n in result.space.nodes if n.terminal}
    assert ends == {"forward", "back", "wait"}
    # two rollouts value the start (Monte Carlo, no reward model), then one sample per candidate (two
    # answered by fill-ins) and none after; before, samples went on to 2 x k_max = 10
    assert policy.calls == 5 and result.stats["exhausted"]


def _maze_96() -> tuple[Space, object]:
    """Test maze 96 with the benchmark's node: its fourth rollout from the start corners (every
    way out of (1, 0) and (2, 0) is a finished trap or a loop back into its own walk)."""
    import zlib

    task = KeyMazeSuite().tasks("test", 97)[96]
    graph, _ = task.make_graph(biased_node(task, seed=zlib.crc32(task.id.encode())))
    return Space(graph, "policy", outcome=task.outcome, meter=BudgetMeter(Budget(policy_calls=120)), repeatable=True), task


def test_a_cornered_rollout_escapes_as_the_agent_would_instead_of_circling():
    from trajgraph.search.budget import BudgetExhausted

    async def four(space, task, escape):
        root = await space.root(task.input)
        return [await space.rollout(root, escape=escape) for _ in range(4)]

    space, task = _maze_96()
    ends = asyncio.run(four(space, task, True))
    assert all(e.terminal and e.depth <= task.horizon for e in ends) and space.meter.spent.policy_calls < 60
    space, task = _maze_96()
    with pytest.raises(BudgetExhausted):  # without: between two cells until the 120 calls are gone
        asyncio.run(four(space, task, False))


def test_se_agent_evolves_where_its_rollouts_would_corner():
    # the same maze through SE-Agent: its initial population used to take the whole budget (no generation)
    import zlib

    task = KeyMazeSuite().tasks("test", 97)[96]
    graph, _ = task.make_graph(biased_node(task, seed=zlib.crc32(task.id.encode())))
    result = search(graph, task.input, decision_node="policy", optimizer=SEAgent(), outcome=task.outcome,
                    budget=Budget(policy_calls=20 * task.solution_length), repeatable=True)
    assert result.stats.get("generations", 0) >= 1 and len(result.stats["fitness_per_generation"]) >= 1
