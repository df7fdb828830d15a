"""Trajectory synthesis for coverage: new tasks, novelty-seeking collection, near-duplicate removal.

Training a policy on the trajectories it collected works better when they cover many
situations than when they repeat a few (the coverage report in each trained head's card
counts them: `trajgraph.learn.data.coverage`). Three small pieces aim at that:

- `generate_tasks(suite, n, seed)`: fresh training tasks from an environment's own
  generator (FrozenLake maps by seed, deceptive chains by seed, TextWorld games by seed),
  through the suite's `tasks("train", ...)`, so they never overlap its test split.
- `NoveltyPolicy(base)`: a policy wrapper that re-ranks the base policy's candidates by a
  count-based exploration bonus, beta / sqrt(1 + n(situation, action)) (Strehl & Littman
  2008, MBIE-EB; Bellemare et al. 2016, "Unifying count-based exploration"), where n counts
  the (situation, action) pairs already taken in this collection (and any seeded from a store).
- `dedupe(trajectories, threshold)`: drops a trajectory whose action sequence is a near
  duplicate (Jaccard similarity of action n-gram sets >= threshold, as in near-duplicate
  detection by shingling, Broder 1997) of one already kept, keeping the better outcome.

`collect(tasks, policy, episodes)` runs episodes and returns `Trajectory` records; their
successful decisions (`decisions_of`) train the head directly (`trainable_fit.fit`).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.learn.data import Decision


@dataclass(frozen=True)
class Trajectory:
    """One collected episode: per decision, the situation seen and the action taken; the outcome."""

    task: str
    states: tuple[dict[str, Any], ...]  # what the policy saw (task, observation, actions, history)
    actions: tuple[str, ...]
    outcome: float

    @property
    def situations(self) -> tuple[str, ...]:
        return tuple(situation(s) for s in self.states)


def situation(state: dict[str, Any]) -> str:
    """What counts as "the same situation": task text and observation (the state of a toy-text world)."""
    return f"{state.get('task', '')}\n{state.get('observation', '')}"


def _ngrams(actions: Sequence[str], n: int) -> set[tuple[str, ...]]:
    if len(actions) < n:
        return {tuple(actions)}
    return {tuple(actions[i:i + n]) for i in range(len(actions) - n + 1)}


def similarity(a: Sequence[str], b: Sequence[str], n: int = 2) -> float:
    """Jaccard similarity of the two action sequences' n-gram sets (1.0: the same shingles)."""
    x, y = _ngrams(a, n), _ngrams(b, n)
    return len(x & y) / len(x | y) if x | y else 1.0


def dedupe(trajectories: Iterable[Trajectory], threshold: float = 0.8, n: int = 2) -> list[Trajectory]:
    """Near-duplicate removal: of trajectories of the same task whose action n-gram sets have
    Jaccard similarity >= threshold, only the one with the better outcome stays (ties: the first).

    Greedy in order of outcome (best first), so a worse near-copy never displaces a better one."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"dedupe threshold {threshold}: pick a similarity in (0, 1]")
    items = list(trajectories)
    order = sorted(range(len(items)), key=lambda i: (-items[i].outcome, i))
    kept: list[int] = []
    for i in order:
        t = items[i]
        if not any(items[j].task == t.task and similarity(items[j].actions, t.actions, n) >= threshold for j in kept):
            kept.append(i)
    return [items[i] for i in sorted(kept)]


def _action(candidate: Any) -> str | None:
    if isinstance(candidate, dict) and isinstance(candidate.get("action"), str):
        return str(candidate["action"])
    return None


@dataclass
class NoveltyPolicy:
    """Wraps a policy (`async propose(state, k)`): asks it for `pool` candidates, adds the
    admissible actions it did not propose, and returns the k with the highest
    prior_weight * prior + beta / sqrt(1 + n(situation, action)), where prior is 1 for the
    base's first choice falling linearly to 0 for its last (so the base breaks ties and a
    strong base keeps some say), and n counts pairs seen (`observe` / `seen`).

    Every returned action is admissible when the state lists its actions."""

    base: Any
    beta: float = 1.0
    prior_weight: float = 0.1
    pool: int = 4
    seed: int = 0
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self.name = f"novelty({getattr(self.base, 'name', type(self.base).__name__)}, beta={self.beta:g})"

    def observe(self, state: dict[str, Any], action: str) -> None:
        """Count one (situation, action) pair as taken."""
        self.seen[(situation(state), action)] += 1

    def bonus(self, state: dict[str, Any], action: str) -> float:
        return float(self.beta / (1.0 + self.seen[(situation(state), action)]) ** 0.5)

    async def propose(self, state: dict[str, Any], k: int) -> list[Any]:
        proposed = [a for a in (_action(c) for c in await self.base.propose(state, max(k, self.pool))) if a is not None]
        admissible = list(state.get("actions") or [])
        if admissible:
            proposed = [a for a in proposed if a in admissible]
        ranked = list(dict.fromkeys(proposed))
        rest = [a for a in admissible if a not in ranked]
        self._rng.shuffle(rest)
        candidates = ranked + rest
        if not candidates:
            return []
        prior = {a: 1.0 - i / max(1, len(ranked)) if a in ranked else 0.0 for i, a in enumerate(candidates)}
        order = sorted(candidates, key=lambda a: -(self.prior_weight * prior[a] + self.bonus(state, a)))
        return [{"action": a} for a in (order * k)[:k]]


@dataclass
class RandomPolicy:
    """Uniform over the admissible actions (plain exploration), seeded."""

    seed: int = 0
    name: str = "random"

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def propose(self, state: dict[str, Any], k: int) -> list[Any]:
        actions = list(state.get("actions") or [])
        return [{"action": self._rng.choice(actions)} for _ in range(k)] if actions else []


def generate_tasks(suite: Any, n: int, seed: int = 0) -> list[Any]:
    """n new training tasks from the suite's generator (its disjoint "train" split, by seed):
    `FrozenLakeSuite` maps, `ChainSuite` chains, `TextWorldSuite` games."""
    if n < 1:
        raise ConfigError(f"generate_tasks n={n}: ask for at least one task")
    return list(suite.tasks("train", n, seed))


def _view(state: dict[str, Any]) -> dict[str, Any]:
    return {"task": state.get("task"), "observation": state.get("observation"), "actions": list(state.get("actions") or []),
            "history": [{"action": h.get("action"), "observation": h.get("observation", "")} for h in state.get("history") or []]}


def rollout(task: Any, policy: Any) -> Trajectory:
    """One episode of an env-loop task with the policy's first proposal at each step."""
    states: list[dict[str, Any]] = []
    actions: list[str] = []

    def node(state: dict[str, Any]) -> dict[str, Any]:
        view = _view(state)
        proposed = asyncio.run(policy.propose(view, 1))
        action = _action(proposed[0]) if proposed else None
        action = action or (view["actions"][0] if view["actions"] else "")
        states.append(view)
        actions.append(action)
        if hasattr(policy, "observe"):
            policy.observe(view, action)
        return {"action": action}

    graph, _ = task.make_graph(node)
    final = graph.invoke(task.input, {"recursion_limit": 4 * (task.max_steps or 50) + 10})
    return Trajectory(str(task.id), tuple(states), tuple(actions), float(task.outcome(final) or 0.0))


def collect(tasks: Sequence[Any], policy: Any, episodes: int) -> list[Trajectory]:
    """`episodes` episodes, round-robin over the tasks."""
    if not tasks:
        raise ConfigError("collect: no tasks given")
    return [rollout(tasks[i % len(tasks)], policy) for i in range(episodes)]


def coverage_of(trajectories: Iterable[Trajectory]) -> dict[str, int]:
    """Distinct situations and (situation, action) pairs, trajectories and successes."""
    ts = list(trajectories)
    sits: set[Hashable] = set()
    pairs: set[Hashable] = set()
    for t in ts:
        for s, a in zip(t.situations, t.actions):
            sits.add(s)
            pairs.add((s, a))
    return {"trajectories": len(ts), "successful": sum(t.outcome >= 1.0 for t in ts), "situations": len(sits),
            "situation_actions": len(pairs)}


def decisions_of(trajectories: Iterable[Trajectory], success_threshold: float = 1.0) -> list[Decision]:
    """The decisions of successful trajectories, de-duplicated by (situation, action), for `fit`."""
    out: dict[tuple[str, str], Decision] = {}
    for i, t in enumerate(trajectories):
        if t.outcome < success_threshold:
            continue
        for state, action in zip(t.states, t.actions):
            out.setdefault((situation(state) + str([h["action"] for h in state["history"]]), action),
                           Decision(state, action, f"synth-{i}", t.task))
    return list(out.values())


__all__ = ["Trajectory", "situation", "similarity", "dedupe", "NoveltyPolicy", "RandomPolicy", "generate_tasks", "rollout",
           "collect", "coverage_of", "decisions_of"]
