"""One reward model for a whole Ray cluster: an async actor holding `LocalRewardModel` (extra `trajgraph[ray]`).

    reward = shared_reward("rm/")             # starts the actor (on a GPU when the cluster has one)
    bench.run_bench(..., reward=reward, executor=RayExecutor(workers=8))

Every search worker scores through the same actor, so the model is loaded
once, on the machine that should hold it, and requests from all workers are
batched together: the actor queues what arrives and runs one forward pass over
everything waiting (up to `max_batch` items), so 64 callers asking for a few
items each cost a few large batches, not 64 small ones. `RemoteReward` speaks
the same `Reward` protocol (`score`, `ascore`) as the model itself, so
optimizers do not change; it pickles as the actor's handle, so it can be
handed to workers inside the search function.

A plain async actor, not Ray Serve: when this was planned (issue 13), the same
model served 3,800 items/s from an async actor against 1,200 through Serve
with 64 callers; Serve puts a router and its own batching queue in front of
the same forward pass. benchmarks/scale.py measures this actor's batch sizes
and latency against the number of callers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from trajgraph.reward.base import RewardItem


class _RewardActor:
    """The actor's body (made remote by `shared_reward`): a queue in front of one model."""

    def __init__(self, path: str, device: str, max_batch: int, model_kwargs: dict[str, Any]) -> None:
        from trajgraph.reward import LocalRewardModel

        self.model = LocalRewardModel(path, device=device, **model_kwargs)
        self.max_batch = max_batch
        self.queue: asyncio.Queue[tuple[list[RewardItem], asyncio.Future[list[float]]]] | None = None
        self.batches: list[int] = []  # items per forward pass, for the benchmark's table
        self.task: asyncio.Task[None] | None = None

    async def score(self, items: Sequence[RewardItem]) -> list[float]:
        if not items:
            return []
        if self.queue is None:  # created on the actor's own event loop
            self.queue = asyncio.Queue()
            self.task = asyncio.get_running_loop().create_task(self._serve())
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        await self.queue.put((list(items), future))
        return await future

    async def _serve(self) -> None:
        assert self.queue is not None
        while True:
            work = [await self.queue.get()]
            size = len(work[0][0])
            while not self.queue.empty() and size < self.max_batch:  # everything that arrived meanwhile
                nxt = self.queue.get_nowait()
                work.append(nxt)
                size += len(nxt[0])
            items = [item for batch, _ in work for item in batch]
            try:
                scores = await asyncio.to_thread(self.model.score, items)  # the forward pass, off the event loop
            except BaseException as exc:
                for _, fut in work:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches.append(len(items))
            start = 0
            for batch, fut in work:
                if not fut.done():
                    fut.set_result(scores[start : start + len(batch)])
                start += len(batch)

    def stats(self) -> dict[str, Any]:
        b = self.batches
        return {"batches": len(b), "items": sum(b), "mean_batch": (sum(b) / len(b)) if b else 0.0, "max_batch": max(b, default=0),
                "device": str(self.model.device)}

    def reset_stats(self) -> None:
        self.batches = []

    def describe(self) -> str:
        return repr(self.model)


class RemoteReward:
    """The `Reward` protocol over a shared reward actor; picklable (it is the actor's handle)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def score(self, items: Sequence[RewardItem]) -> list[float]:
        import ray

        return list(ray.get(self.actor.score.remote(list(items))))

    async def ascore(self, items: Sequence[RewardItem]) -> list[float]:
        return list(await self.actor.score.remote(list(items)))

    def stats(self) -> dict[str, Any]:
        import ray

        return dict(ray.get(self.actor.stats.remote()))

    def __repr__(self) -> str:
        return f"RemoteReward({self.actor})"


def shared_reward(path: str, *, device: str = "auto", max_batch: int = 256, num_gpus: float | None = None,
                  address: str | None = None, name: str | None = None, **model_kwargs: Any) -> RemoteReward:
    """Start the reward actor (one GPU when the cluster has one, unless `num_gpus` says otherwise) and wait
    until its model is loaded; a bad model folder fails here, not in the first search."""
    from trajgraph.adapters.ray_connect import connect

    ray = connect(address)
    if num_gpus is None:
        num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    options: dict[str, Any] = {"num_gpus": num_gpus, "num_cpus": 1, "max_concurrency": 1000}
    if name is not None:
        options.update(name=name, get_if_exists=True, lifetime="detached")
    actor = ray.remote(_RewardActor).options(**options).remote(str(path), device, max_batch, model_kwargs)
    ray.get(actor.describe.remote())  # the model loads in the constructor: surface its error now
    return RemoteReward(actor)


def latency_probe(reward: RemoteReward, items: Sequence[RewardItem], callers: int, rounds: int) -> dict[str, float]:
    """`callers` concurrent callers each scoring `items` `rounds` times: items/s and latency percentiles (ms)."""

    async def caller(lat: list[float]) -> None:
        for _ in range(rounds):
            t0 = time.perf_counter()
            await reward.ascore(items)
            lat.append((time.perf_counter() - t0) * 1000)

    async def main() -> tuple[list[float], float]:
        lat: list[float] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(lat) for _ in range(callers)))
        return lat, time.perf_counter() - t0

    lat, wall = asyncio.run(main())
    lat.sort()
    return {"items_per_s": callers * rounds * len(items) / wall, "p50_ms": lat[len(lat) // 2],
            "p95_ms": lat[min(len(lat) - 1, int(0.95 * len(lat)))]}


__all__ = ["RemoteReward", "shared_reward", "latency_probe"]
