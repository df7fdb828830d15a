"""optimize(): an optimized agent is a compiled graph, records its tree, nests in parents."""

from __future__ import annotations

import random

import pytest
from langgraph.graph import END, START, StateGraph

import trajgraph as tg
from trajgraph.errors import ConfigError, ForkError
from trajgraph.search.budget import Budget
from trajgraph.search.optimize import optimize, search
from trajgraph.search.optimizers import MCTS, RRO, BestOfN, Greedy, SEAgent
from trajgraph.search.policy import LiteLLMPolicy
from trajgraph.search.rollout_value import RolloutValue
from trajgraph.testing import FakeToolModel, ScriptedPolicy, fake_tool_call, react_calculator_agent
from trajgraph.testing.tiny_env import CorridorEnv, EnvState, calculator_tools, chain_start, corridor_graph, deceptive_chain_graph


def test_optimized_agent_is_a_node_of_a_parent_graph(tmp_path):
    store = tg.Store(tmp_path / "runs.db")
    solver = optimize(deceptive_chain_graph(depth=4, seed=5), decision_node="policy", optimizer=MCTS(),
                      reward=lambda s: s.get("score", 0.0), budget=Budget(policy_calls=40), store=store)

    def prepare(state: EnvState) -> dict:
        return {"task": "escape", "observation": "room 0: three doors and a ledge", "actions": ["left", "right", "up", "jump"],
                "pos": 0, "score": 0.0, "done": False}

    def report(state: EnvState) -> dict:
        return {"observation": f"solver finished with reward {state['reward']}"}

    parent = StateGraph(EnvState)
    parent.add_node("prepare", prepare)
    parent.add_node("solver", solver)
    parent.add_node("report", report)
    parent.add_edge(START, "prepare")
    parent.add_edge("prepare", "solver")
    parent.add_edge("solver", "report")
    parent.add_edge("report", END)
    out = parent.compile().invoke({"task": ""})
    assert out["reward"] == 1.0 and out["done"] is True
    assert out["observation"] == "solver finished with reward 1.0"
    assert len(out["history"]) == 4  # the solver's history, not doubled by the reducer
    searches = store.runs(kind="search")
    assert len(searches) == 1 and searches[0].status == "succeeded" and searches[0].outcome == 1.0


def test_optimized_react_agent_runs_and_records_its_tree(tmp_path):
    store = tg.Store(tmp_path / "runs.db")

    def respond(messages, rng: random.Random):
        last = messages[-1]
        if last.type == "human":  # noisy first move: the right tool half of the time
            return [fake_tool_call("multiply", a=3, b=4)] if rng.random() < 0.5 else [fake_tool_call("add", a=3, b=4)]
        return f"The answer is {last.content}"

    model = FakeToolModel(respond=respond, seed=1)
    agent = react_calculator_agent(model)
    best = optimize(agent, decision_node="agent", optimizer=MCTS(k=3), store=store, budget=Budget(policy_calls=12),
                    outcome=lambda s: float("12" in str(s["messages"][-1].content)) if s["messages"][-1].type == "ai" and not s["messages"][-1].tool_calls else None)
    out = best.invoke({"messages": [("user", "what is 3 times 4?")]})
    assert "12" in out["messages"][-1].content
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool", "ai"]
    run = store.runs(kind="search")[0]
    nodes = store.search_nodes(run.id)
    assert len(nodes) >= 3 and nodes[0].parent_id is None
    assert all(n.parent_id is not None for n in nodes[1:])
    chosen = [n for n in nodes if n.chosen]
    assert chosen[-1].terminal and chosen[-1].outcome == 1.0
    assert any("multiply" in n.action_text for n in chosen)
    rollouts = store.runs(kind="rollout", parent_id=run.id)
    best_runs = [r for r in rollouts if "best" in r.tags]
    assert len(best_runs) == 1 and best_runs[0].outcome == 1.0
    steps = store.steps(best_runs[0].id)
    assert [s.node for s in steps] == ["agent", "tools", "agent"]
    assert steps[0].action is not None and steps[1].action is None
    assert run.metadata["spent"]["policy_calls"] <= 12


def test_environment_outside_the_graph_forks_by_snapshot_restore():
    env = CorridorEnv(length=3)
    env.reset()
    policy = ScriptedPolicy(lambda state, k, rng: [{"action": rng.choice(["forward", "back"])} for _ in range(k)], seed=3)
    result = search(corridor_graph(env), {"task": "walk", "observation": "at 0", "actions": ["forward", "back"], "done": False},
                    decision_node="policy", optimizer=MCTS(k=2), policy=policy, environment=env, budget=Budget(policy_calls=60))
    assert result.outcome == 1.0
    # replaying the chosen actions on a fresh corridor gives the same observations: branches never leaked state
    fresh = CorridorEnv(length=3)
    fresh.reset()
    for node in result.best.path()[1:]:
        obs, _, _ = fresh.step(node.action["action"])
        assert node.observation == obs


def test_environment_that_cannot_fork_gets_a_clear_error():
    class Opaque:
        def step(self, action):
            return "?"

    with pytest.raises(ForkError, match="snapshot"):
        search(deceptive_chain_graph(), chain_start(), decision_node="policy", environment=Opaque())


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ConfigError, match="decision node 'nope'"):
        optimize(deceptive_chain_graph(), decision_node="nope")
    with pytest.raises(ConfigError, match="search"):
        search(deceptive_chain_graph(), chain_start(), decision_node="policy", optimizer=object())


def test_invalid_candidates_are_recorded_not_fatal(tmp_path):
    store = tg.Store(tmp_path / "runs.db")

    def proposals(state, k, rng):
        return [{"action": "fly away"}, {"action": state["actions"][0]}, {"action": "left"}][:k]

    result = search(deceptive_chain_graph(depth=2, seed=0), chain_start(), decision_node="policy", optimizer=MCTS(k=3),
                    policy=ScriptedPolicy(proposals), store=store, budget=Budget(policy_calls=12))
    nodes = store.search_nodes(result.run_id)
    invalid = [n for n in nodes if n.invalid]
    assert invalid and all(n.action_text == "fly away" for n in invalid)
    assert not any(n.chosen for n in invalid)


def test_policy_exceptions_become_invalid_candidates():
    class Broken:
        name = "broken"

        async def propose(self, state, k):
            raise TimeoutError("model took too long")

    result = search(deceptive_chain_graph(depth=2), chain_start(), decision_node="policy", optimizer=MCTS(k=2),
                    policy=Broken(), budget=Budget(policy_calls=4, finish=False))
    assert any(n.invalid and "TimeoutError" in n.observation for n in result.space.nodes)


def test_search_tree_and_pairs_land_in_the_store(tmp_path):
    store = tg.Store(tmp_path / "runs.db")
    for opt in (Greedy(), BestOfN(), RRO(), MCTS(), SEAgent(population=3, generations=2)):
        result = search(deceptive_chain_graph(depth=4, seed=7), chain_start("chain-7"), decision_node="policy", optimizer=opt,
                        reward=lambda s: s.get("score", 0.0), budget=Budget(policy_calls=30), store=store, task="chain-7")
        run = store.run(result.run_id)
        assert run.kind == "search" and run.metadata["optimizer"] == opt.name and run.task == "chain-7"
        assert len(store.search_nodes(run.id)) == result.nodes
        rollouts = store.runs(parent_id=run.id)
        assert rollouts and all(r.kind == "rollout" and r.task == "chain-7" for r in rollouts)
        assert sum("best" in r.tags for r in rollouts) == 1
        pairs = store.pairs(run_id=run.id)
        for p in pairs:
            assert p.chosen_score > p.rejected_score and p.prompt["task"].startswith("chain-7")
            assert p.chosen["text"] != p.rejected["text"]
        if opt.name in ("rro", "mcts"):
            assert pairs, opt.name


def test_rollout_value_is_a_monte_carlo_process_reward():
    result = search(deceptive_chain_graph(depth=3, seed=4, skill=0.7), chain_start(), decision_node="policy",
                    optimizer=RRO(k_max=3), reward=RolloutValue(n=3), budget=Budget(policy_calls=80))
    scored = [n for n in result.space.nodes if n.value is not None and not n.terminal]
    assert scored and all(0.0 <= n.value <= 1.0 for n in scored)
    assert result.spent.policy_calls > 6  # rollouts spend the budget too


def test_litellm_policy_with_mock_responses_samples_k_and_counts_tokens():
    policy = LiteLLMPolicy("openai/gpt-4o-mini", extra={"mock_response": "left"})
    result = search(deceptive_chain_graph(depth=3, seed=0), chain_start(), decision_node="policy", optimizer=Greedy(),
                    policy=policy, budget=Budget(policy_calls=10, finish=False))
    assert policy.stats.calls >= 1 and policy.stats.prompt_tokens > 0
    assert result.best.path()[1].action == {"action": "left"}


def test_langchain_create_agent_is_optimized_at_its_model_node(tmp_path):
    from langchain.agents import create_agent
    def respond(messages, rng):
        if messages[-1].type == "human":
            return [fake_tool_call("multiply", a=3, b=4)] if rng.random() < 0.3 else [fake_tool_call("add", a=3, b=4)]
        return f"The answer is {messages[-1].content}"

    def outcome(state):
        last = state["messages"][-1]
        return float("12" in str(last.content)) if last.type == "ai" and not last.tool_calls else None

    agent = create_agent(FakeToolModel(respond=respond, seed=4), calculator_tools())
    store = tg.Store(tmp_path / "runs.db")
    best = optimize(agent, decision_node="model", optimizer=BestOfN(), outcome=outcome, budget=Budget(policy_calls=20), store=store)
    out = best.invoke({"messages": [("user", "what is 3 times 4?")]})
    assert out["messages"][-1].content == "The answer is 12.0"
    assert store.runs(kind="search")[0].outcome == 1.0
