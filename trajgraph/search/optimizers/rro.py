"""RRO: Reward Rising Optimization.

Paper: "RRO: LLM Agent Optimization Through Rising Reward Trajectories"
(COLM 2025, arXiv:2505.20737). At each decision point, candidate next actions
are sampled a few at a time and each is scored by its process reward (a reward
model, or the mean final reward of Monte Carlo rollouts from it, as in IPR).
The first candidate whose reward rises above the previous step's is taken and
sampling stops; if none rises, sampling widens up to `k_max` and the best is
taken. A policy that keeps proposing actions already tried (a deterministic
agent, or one with a single idea here) stops the widening after 2 x `k_max`
samples, so an unlimited budget cannot spin on duplicates. A candidate whose
reward is already at `success` (every Monte Carlo rollout from it succeeded)
counts as rising: a value at its ceiling cannot rise, and a strong policy would
otherwise widen at every step. The by-product is step-level preference data:
the rising candidate against each candidate it beat at the same prefix (for DPO).
"""

from __future__ import annotations

from dataclasses import dataclass

from trajgraph.search._write import TreeLog
from trajgraph.search.optimizers.base import at_least, success
from trajgraph.search.space import Node, Space


@dataclass(frozen=True)
class RRO:
    group: int = 1  # candidates sampled (and scored concurrently) at a time
    k_max: int = 5  # widen up to this many candidates per decision point
    min_rise: float = 0.0  # a candidate rises when score > previous + min_rise
    rollouts: int = 2  # Monte Carlo rollouts per candidate when the search has no reward model
    success: float = 1.0
    name: str = "rro"

    def __post_init__(self) -> None:
        at_least(self, group=self.group, k_max=self.k_max)
        at_least(self, 0, rollouts=self.rollouts)

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        if space.reward is None and self.rollouts > 0:  # the paper's process reward: MC rollouts
            from trajgraph.search.rollout_value import RolloutValue

            space.reward = RolloutValue(n=self.rollouts)
        node = root
        previous = (await space.score([root]))[0]
        per_step: list[int] = log.stats.setdefault("candidates_per_step", [])
        while not node.terminal:
            tried: list[tuple[Node, float]] = []
            seen: set[str] = set()
            chosen: Node | None = None
            drawn = 0
            while len(tried) < self.k_max and drawn < 2 * self.k_max and chosen is None:
                want = min(self.group, self.k_max - len(tried))
                drawn += want
                fresh = [c for c in await space.propose(node, want) if c.key not in seen]
                seen.update(c.key for c in fresh)
                if not fresh:
                    continue
                children = await space.gather(*(space.expand(node, c) for c in fresh))
                scores = await space.score(children)
                for child, s in zip(children, scores):  # first rising, in sampling order
                    tried.append((child, s))
                    if chosen is not None or child.invalid:
                        continue
                    if s > previous + self.min_rise or success(child, self.success):
                        chosen = child
                        chosen.reason = f"first rising candidate ({s:.3f} > previous {previous:.3f})"
                    elif s >= self.success and s >= previous:  # a value already at success cannot rise
                        chosen = child
                        chosen.reason = f"first candidate at success ({s:.3f}, previous {previous:.3f})"
            if chosen is None:
                valid = [(c, s) for c, s in tried if not c.invalid] or tried
                chosen = max(valid, key=lambda cs: cs[1])[0]
                chosen.reason = f"none of {len(tried)} rose above {previous:.3f}; best taken"
            per_step.append(len(tried))
            best_score = chosen.score if chosen.score is not None else 0.0
            for other, s in tried:
                if other is not chosen and s < best_score:
                    log.pair("rro", node, chosen, other, best_score, s)
            previous, node = best_score, chosen
        log.stats["mean_candidates_per_step"] = sum(per_step) / len(per_step) if per_step else 0.0
        return node
