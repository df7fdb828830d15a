"""adapters/ray_reward.py: one reward actor serves every caller with the model's own scores, batching
concurrent requests together, and drops into a search (and a Ray bench) as an ordinary reward."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from trajgraph.adapters.ray_reward import RemoteReward, shared_reward
from trajgraph.reward import LocalRewardModel, Reward, RewardItem, init_model


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model(tmp_path_factory.mktemp("rm") / "rm", max_length=64)


@pytest.fixture(scope="module")
def reward(ray_local: Any, rm_dir: Path) -> RemoteReward:
    """One actor for the module (each start loads torch and the model: seconds on 2 cores)."""
    return shared_reward(str(rm_dir), device="cpu", max_batch=64)


def _items(n: int, tag: str = "") -> list[RewardItem]:
    return [RewardItem(f"reach room {i % 5}{tag}", (("go east", f"room {i % 3}"),), f"go {'north' if i % 2 else 'south'}") for i in range(n)]


def test_actor_scores_like_the_model_and_batches_callers(ray_local: Any, rm_dir: Path, reward: RemoteReward) -> None:
    local = LocalRewardModel(rm_dir, device="cpu")
    assert isinstance(reward, Reward)  # the same protocol optimizers take
    items = _items(12)
    want = local.score(items)
    assert reward.score(items) == pytest.approx(want, abs=1e-5)
    assert reward.score([]) == []

    async def many() -> list[list[float]]:  # 16 callers at once, each its own items
        return await asyncio.gather(*(reward.ascore(_items(4, f" #{c}")) for c in range(16)))

    ray_local.get(reward.actor.reset_stats.remote())
    got = asyncio.run(many())
    for c, scores in enumerate(got):  # each caller gets its own items' scores back, in order
        assert scores == pytest.approx(local.score(_items(4, f" #{c}")), abs=1e-5)
    stats = reward.stats()
    assert stats["items"] == 64 and stats["batches"] < 16  # callers shared forward passes
    assert stats["max_batch"] <= 64


def test_remote_reward_pickles_as_its_handle(ray_local: Any, reward: RemoteReward) -> None:
    """A worker receives the reward inside the search function and scores through the same actor."""

    @ray_local.remote
    def score_elsewhere(r: RemoteReward, items: list[RewardItem]) -> list[float]:
        return r.score(items)

    items = _items(5)
    assert ray_local.get(score_elsewhere.remote(reward, items)) == pytest.approx(reward.score(items), abs=1e-6)
    ray_local.get(reward.actor.reset_stats.remote())
    ray_local.get(score_elsewhere.remote(reward, items))
    assert reward.stats()["items"] == 5  # that worker's request reached the one shared actor


def test_a_bad_model_folder_fails_at_start(ray_local: Any, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="reward model"):
        shared_reward(str(tmp_path / "missing"), device="cpu")


def test_searches_on_ray_with_the_shared_actor_match_the_local_model(ray_local: Any, rm_dir: Path, reward: RemoteReward) -> None:
    """Optimizers do not change: MCTS scored by the shared actor from Ray workers gives the table that the
    in-process model gives (repeatable mode; CPU scores are deterministic). The session's Ray has 2 CPUs and
    the actor holds one, so one of the two workers never starts: the other takes every search."""
    from trajgraph import bench
    from trajgraph.adapters.ray_executor import RayExecutor
    from trajgraph.cli.bench import load_suite, policy_factory

    tasks = load_suite("chain").tasks("test", 2, 0)
    policy_for = policy_factory("simulated", model=None, skill=0.6, seed=0)[0]

    def table(reward_obj: Any, executor: Any) -> list[tuple[Any, ...]]:
        results = asyncio.run(bench.run_bench(tasks, ["mcts"], policy_for=policy_for, reward=reward_obj, budget=12,
                                              repeatable=True, executor=executor))
        return [(r.task, r.outcome, r.policy_calls, r.env_steps, r.decisions) for r in results]

    ray_local.get(reward.actor.reset_stats.remote())
    assert table(reward, RayExecutor(workers=2)) == table(LocalRewardModel(rm_dir, device="cpu"), None)
    assert reward.stats()["items"] > 0  # the workers' searches did score through the actor
