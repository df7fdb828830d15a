"""RRO: Reward Rising Optimization.

Paper: "RRO: LLM Agent Optimization Through Rising Reward Trajectories"
(COLM 2025, arXiv:2505.20737). At each decision point, candidate next actions
are sampled a few at a time and each is scored by its process reward (a reward
model, or the mean final reward of Monte Carlo rollouts from it, as in IPR).
The first candidate whose reward rises above the previous step's is taken and
sampling stops; if none rises, sampling widens up to `k_max` and the best is
taken. A policy that keeps proposing actions already tried (a deterministic
agent, or one with a single idea here) stops the widening after 2 x `k_max`
samples, so an unlimited budget cannot spin on duplicates, and a state that lists its
actions stops widening once each has been tried (a further sample could only repeat
one: on one outcome-only key maze those repeats took about 60 of 140 calls). A candidate whose
reward is already at `success` (every Monte Carlo rollout from it succeeded)
counts as rising: a value at its ceiling cannot rise, and a strong policy would
otherwise widen at every step. The by-product is step-level preference data:
the rising candidate against each candidate it beat at the same prefix (for DPO).

Leftover budget (`anytime=True`, the default): the paper walks one trajectory and
stops. When that trajectory ends below `success` with budget left, this RRO
first takes any finished trajectory the search already holds that reached
success (a Monte Carlo rollout is a real trajectory), else backtracks: it
resumes the walk from the most promising candidate it scored but did not take
(highest process reward, anywhere in the tree), or, when every scored candidate
was taken or finished, widens the most promising walked decision point that can
still be widened. It stops at success, when nothing is left to try, or when the
budget stops it. `anytime=False` is the paper's single walk.

Beyond the paper, each a setting: `value="auto"` values candidates by the search's
reward model, else the environment's partial outcome when it gives one, else Monte
Carlo rollouts (the choice is in `stats["value_source"]`); a state reached before
keeps its score (transpositions, `Space.score`); `widen="value"`: when the policy
keeps proposing actions already tried, the state's admissible actions fill in
(most probable first when the policy gives priors), so widening reaches every
action (`widen="repeats"`: the paper's re-sampling only; `"auto"`, the default:
"value" unless a learned reward model values the candidates, see `fills_in`); candidates drawn
together are tried in order of the policy's prior when it gives one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trajgraph.errors import ConfigError
from trajgraph.search.optimizers.base import at_least, fills_in, finite, success, value_source
from trajgraph.search.scoring import Scorer
from trajgraph.search.space import Node, Space
from trajgraph.search.tree import TreeLog


@dataclass
class _Point:
    """One decision point's sampling so far (kept across walks, for backtracking)."""

    tried: list[tuple[Node, float]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    drawn: int = 0


@dataclass(frozen=True)
class RRO:
    group: int = 1  # candidates sampled (and scored concurrently) at a time
    k_max: int = 5  # widen up to this many candidates per decision point
    min_rise: float = 0.0  # a candidate rises when score > previous + min_rise
    rollouts: int = 2  # Monte Carlo rollouts per candidate when the search has no reward model
    success: float = 1.0
    anytime: bool = True  # backtrack while the budget lasts (False: the paper's single walk)
    widen: str = "auto"  # "value": admissible actions fill in for repeated samples; "repeats": re-sample only; "auto": see fills_in
    value: str = "auto"  # "auto": reward model, else partial outcome, else rollouts; "rollouts": always rollouts
    name: ClassVar[str] = "rro"
    open_ended: ClassVar[bool] = False  # stops when nothing is left to try

    def __post_init__(self) -> None:
        at_least(self, group=self.group, k_max=self.k_max)
        at_least(self, 0, rollouts=self.rollouts)
        finite(self, min_rise=self.min_rise, success=self.success)
        if self.widen not in ("auto", "value", "repeats"):
            raise ConfigError(f"RRO(widen={self.widen!r}): choose from auto, value, repeats")

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        # the paper's process reward when the search has none: MC rollouts, kept to this
        # search (the space's own reward stays what the user gave)
        source, scorer = value_source(space, self.rollouts, self.value)
        log.stats["value_source"] = source
        log.notes.append(f"rro values candidates by {source}")
        points: dict[int, _Point] = {}
        followed: set[int] = {root.id}
        start, previous = root, (await space.score([root], scorer))[0]
        best: Node | None = None
        while True:
            end = await self.walk(space, start, previous, log, scorer, points, followed)
            if end.terminal and (best is None or _rank(end) > _rank(best)):
                best = end
            if success(end, self.success) or not self.anytime:
                break
            won = [n for n in space.nodes if success(n, self.success) and not n.invalid]
            if won:
                won[0].reason = f"{won[0].reason or 'Monte Carlo rollout'}; reached success while the walk did not"
                best = won[0]
                break
            resume = self.backtrack(space, points, followed)
            if resume is None:
                log.stats["exhausted"] = True  # nothing left to try
                break
            start, previous = resume
            log.stats["backtracks"] = log.stats.get("backtracks", 0) + 1
        per_step = log.stats.get("candidates_per_step") or []
        log.stats["mean_candidates_per_step"] = sum(per_step) / len(per_step) if per_step else 0.0
        return best or end

    async def walk(self, space: Space, node: Node, previous: float, log: TreeLog, scorer: Scorer | None,
                   points: dict[int, _Point], followed: set[int]) -> Node:
        """The paper's walk: at each decision point take the first rising candidate
        (widening up to k_max), until the trajectory ends. Returns where it ended (a
        decision point with nothing valid to take when every candidate failed)."""
        per_step: list[int] = log.stats.setdefault("candidates_per_step", [])
        fill = fills_in(space, self.widen)
        while not node.terminal:
            point = points.setdefault(node.id, _Point())
            chosen: Node | None = None
            new = 0
            been = {n.key for n in node.path()}  # a candidate back to a state on this walk is a loop, never taken
            while self.can_widen(space, node, point) and chosen is None:
                want = min(self.group, self.k_max - len(point.tried))
                point.drawn += want
                fresh = [c for c in await space.propose(node, want) if c.key not in point.seen]
                if not fresh and fill:  # the policy repeats itself: reach the rest
                    fresh = (await space.admissible(node, point.seen))[:want]
                fresh.sort(key=lambda c: -(c.prior or 0.0))  # most probable first (stable: sampling order otherwise)
                point.seen.update(c.key for c in fresh)
                if not fresh:
                    continue
                children = await space.gather(*(space.expand(node, c) for c in fresh))
                scores = await space.score(children, scorer)
                for child, s in zip(children, scores):  # first rising, in sampling order
                    point.tried.append((child, s))
                    new += 1
                    if chosen is not None or child.invalid or child.key in been:
                        continue
                    if s > previous + self.min_rise or success(child, self.success):
                        chosen = child
                        chosen.reason = f"first rising candidate ({s:.3f} > previous {previous:.3f})"
                    elif s >= self.success and s >= previous:  # a value already at success cannot rise
                        chosen = child
                        chosen.reason = f"first candidate at success ({s:.3f}, previous {previous:.3f})"
            if chosen is None:
                valid = [(c, s) for c, s in point.tried if not c.invalid and c.id not in followed and c.key not in been]
                if not valid:
                    return node  # every candidate here failed or was taken: a dead end
                chosen = max(valid, key=lambda cs: cs[1])[0]
                chosen.reason = f"none of {len(point.tried)} rose above {previous:.3f}; best taken"
            per_step.append(new or len(point.tried))
            best_score = chosen.score if chosen.score is not None else 0.0
            for other, s in point.tried:
                if other is not chosen and s < best_score:
                    log.pair("rro", node, chosen, other, best_score, s)
            followed.add(chosen.id)
            previous, node = best_score, chosen
        return node

    def can_widen(self, space: Space, node: Node, point: _Point) -> bool:
        """Whether sampling at `node` may still find a candidate: fewer than k_max tried and
        2 x k_max drawn, and an admissible action not seen yet when the state lists them
        (every listed action tried, a further sample is a repeat or invalid: a call spent
        for nothing)."""
        if len(point.tried) >= self.k_max or point.drawn >= 2 * self.k_max:
            return False
        listed = space.actions_at(node)
        return not listed or any(space.candidate({"action": a}, node.state).key not in point.seen for a in listed)

    def backtrack(self, space: Space, points: dict[int, _Point], followed: set[int]) -> tuple[Node, float] | None:
        """Where to resume: the best-scored candidate not taken yet (an open one: a
        finished one below success has nothing left), else the best walked decision
        point that can still widen. None when nothing is left."""
        untried = [(c, s) for p in points.values() for c, s in p.tried
                   if c.id not in followed and not c.invalid and not c.terminal]
        if untried:
            node, s = max(untried, key=lambda cs: (cs[1], cs[0].depth, -cs[0].id))
            followed.add(node.id)
            node.reason = f"backtracked: the most promising candidate not taken ({s:.3f})"
            return node, s
        widen = [space_node for space_node in space.nodes
                 if space_node.id in points and not space_node.terminal
                 and self.can_widen(space, space_node, points[space_node.id])]
        if widen:
            node = max(widen, key=lambda n: (n.score or 0.0, n.depth, -n.id))
            return node, node.score or 0.0
        return None


def _rank(node: Node) -> tuple[bool, float, float]:
    return (not node.invalid, node.outcome if node.outcome is not None else float("-inf"), node.score or 0.0)
