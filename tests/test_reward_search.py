"""The optimizers with a trained local reward model as their reward, end to end."""

from __future__ import annotations

import pytest

import trajgraph as tg
from tests.test_reward_train import FAST, record_chain_runs
from trajgraph.reward import LocalRewardModel, RewardItem, train
from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory: pytest.TempPathFactory) -> LocalRewardModel:
    store = tg.Store(tmp_path_factory.mktemp("rm-data") / "runs.db")
    record_chain_runs(store, tasks=8, runs=16, seed0=100)
    out = tmp_path_factory.mktemp("rm") / "rm"
    train(store, out, epochs=1, val_fraction=0.25, seed=0, lr=2e-5, **FAST)
    return LocalRewardModel(out, device="cpu")


@pytest.mark.parametrize("optimizer", [tg.MCTS(k=3), tg.RRO(k_max=4)], ids=["mcts", "rro"])
def test_search_with_the_trained_reward_model(reward_model, optimizer, tmp_path):
    store = tg.Store(tmp_path / "search.db")
    wins = 0
    for seed in (500, 501, 502):  # chains never seen in training
        result = tg.search(deceptive_chain_graph(depth=3, skill=0.5, trap=0.3, seed=seed), chain_start(f"chain-{seed}"),
                           decision_node="policy", optimizer=optimizer, reward=reward_model,
                           budget=tg.Budget(policy_calls=30), store=store, task=f"chain-{seed}", repeatable=True)
        wins += result.outcome == 1.0
        scored = [n for n in store.search_nodes(result.run_id) if not n.terminal and n.score is not None]
        assert scored, "the reward model scored the open nodes"
        assert all(0.0 < n.score < 1.0 for n in scored)  # model scores, not outcomes
        # the model's scores separate dead ends from progress at the same depth
        nodes = result.space.nodes
        dead = [n for n in nodes if n.terminal and n.outcome == 0.0]
        alive = [n for n in nodes if not n.terminal and n.depth > 0 and n.score is not None]
        if dead and alive:
            task = result.space.task_text
            dead_scores = reward_model.score([RewardItem(task, n.turns()) for n in dead])
            alive_scores = reward_model.score([RewardItem(task, n.turns()) for n in alive])
            assert sum(alive_scores) / len(alive_scores) > sum(dead_scores) / len(dead_scores)
    assert wins >= 2, wins
