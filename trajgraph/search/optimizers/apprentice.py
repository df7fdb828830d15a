"""Apprentice: follow the policy; where its trajectory falls short, try its next-best actions there.

On-line policy improvement by Monte Carlo rollouts of the policy itself (Tesauro
& Galperin 1996; the rollout algorithm of Bertsekas, Tsitsiklis & Wu 1997):

1. play the policy greedily to the end (its own trajectory, the "apprentice's");
2. if that falls short of `success`, take the states of that trajectory before it
   first came back to one it was in (what follows a loop repeats it), most doubtful
   first (the smallest gap between the policy's probability of what it took and of
   its best alternative there);
3. at each, try the policy's `width` most probable other actions, each finished by
   the policy as it is; the states of those trajectories join the pool (a second
   slip after the first is found the same way); keep the best trajectory, stop at
   the first success or when the budget is spent.

With a value model in the space (`reward=`, e.g. the reward model retrained on the
rounds' outcomes) and `by_value` on, the alternatives at a state are all applied
first and rolled out best-valued first (the policy's order breaks ties): the value
model orders the tries. On the demo's TextWorld games, with a head trained on the
same rounds, that neither helped nor hurt (80/100 either way; benchmarks/README.md,
"TextWorld in 3 rounds"): the trained policy's own order was already as good.

As a search it costs one greedy run plus a few rollouts. As a source of training
data it is what DAgger (Ross et al. 2011) and ExIt (Anthony et al. 2017) ask of an
expert: the search's choice at the states the trained policy itself reaches,
where a search from the start seldom goes. On the demo's TextWorld games the
trained heads fail right after taking the food (the next instruction is a move
and they play "eat kiwi", then loop): those are the states relabelled here. The
stored tree gives `trajgraph.learn.targets` a Q value per tried action (the
apprentice's own action keeps the outcome it reached), and each success is a
trajectory to clone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trajgraph.search.budget import BudgetExhausted
from trajgraph.search.optimizers.base import at_least, finite, success
from trajgraph.search.space import Node, Space
from trajgraph.search.tree import Candidate, TreeLog
from trajgraph.store.json import canonical_key


def _value(node: Node) -> float:
    return float("-inf") if node.invalid or node.outcome is None else float(node.outcome)


@dataclass(frozen=True)
class Apprentice:
    width: int = 3  # other actions tried at a state (the policy's most probable untried ones)
    states: int | None = None  # states of the apprentice's trajectory tried (None: all before its first loop)
    success: float = 1.0
    by_value: bool = True  # with a value model in the space: roll the alternatives at a state out best-valued first
    name: ClassVar[str] = "apprentice"
    open_ended: ClassVar[bool] = False

    def __post_init__(self) -> None:
        at_least(self, width=self.width, states=self.states)
        finite(self, success=self.success)

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        node = root
        while not node.terminal:
            candidate = (await space.propose(node, 1))[0]
            node = await space.expand(node, candidate, merge=False)  # the agent as it is: no loop cut
            node.reason = node.reason or "apprentice: the policy's own trajectory"
        best = node
        log.stats["apprentice_outcome"] = best.outcome
        if success(best, self.success):
            return best
        pool: dict[int, tuple[float, int, Node]] = {}  # node id -> (doubt gap, -depth, node): states not tried yet
        done: set[int] = set()
        await self._add(space, node, pool, done)
        tried = 0
        try:
            while pool and (self.states is None or tried < self.states):
                state = pool.pop(min(pool, key=lambda i: pool[i][:2]))[2]
                done.add(state.id)
                tried += 1
                for candidate, applied in await self._tries(space, state):
                    child = applied if applied is not None else await space.expand(state, candidate, merge=False)
                    leaf = child if child.terminal else await space.rollout(child, fresh=False)
                    if _value(leaf) > _value(best):
                        best = leaf
                        best.reason = f"apprentice: {candidate.text!r} instead of the policy's choice at depth {state.depth}"
                    if success(best, self.success):
                        return best
                    await self._add(space, leaf, pool, done)  # its own doubtful states join the pool (a second slip)
        except BudgetExhausted:
            pass
        finally:
            log.stats["states_tried"] = tried
        return best

    async def _tries(self, space: Space, state: Node) -> list[tuple[Candidate, Node | None]]:
        """The alternatives at `state` in the policy's order, not applied yet (a success ends the search
        before the rest cost anything); with a value model all applied, finished ones ordered by their
        outcome and the rest by their value, best first (a stable sort: the policy's order breaks ties)."""
        others = await self._others(space, state)
        if not (self.by_value and space.reward is not None):
            return [(c, None) for c in others]
        children = [await space.expand(state, c, merge=False) for c in others]
        going = [ch for ch in children if not ch.terminal]
        values = dict(zip((id(ch) for ch in going), await space.score(going), strict=True))
        order = sorted(range(len(others)), key=lambda i: -values.get(id(children[i]), _value(children[i])))
        return [(others[i], children[i]) for i in order]

    async def _add(self, space: Space, leaf: Node, pool: dict[int, tuple[float, int, Node]], done: set[int]) -> None:
        """The states of `leaf`'s trajectory before its first loop, not tried yet, with how doubtful the policy was there."""
        for node in self._before_loop(space, leaf.path()[:-1]):
            if node.id not in done and node.id not in pool:
                pool[node.id] = (await self._gap(space, node), -node.depth, node)

    @staticmethod
    def _before_loop(space: Space, states: list[Node]) -> list[Node]:
        """The states up to the first that repeats an earlier one (a loop: the rest repeats it)."""
        seen: set[str] = set()
        out = []
        for node in states:
            key = space.state_key(node.state)
            if key in seen:
                break
            seen.add(key)
            out.append(node)
        return out

    @staticmethod
    async def _gap(space: Space, node: Node) -> float:
        """The policy's probability of the action it took at `node` minus that of its best other one
        (small: a doubtful choice, tried first); without priors 1.0 (then the deepest state goes first)."""
        table = await space.priors(node)
        taken = {(ch.action_text or "").strip() for ch in node.children if not ch.invalid}
        if not table or not taken:
            return 1.0
        p_taken = max(table.get(a, 0.0) for a in taken)
        return p_taken - max((p for a, p in table.items() if a not in taken), default=0.0)

    async def _others(self, space: Space, node: Node) -> list[Candidate]:
        """The policy's `width` most probable actions at `node` not tried there yet."""
        taken = {canonical_key(ch.action) for ch in node.children if not ch.invalid}
        if space.actions_at(node):
            return (await space.admissible(node, taken))[: self.width]
        proposed = await space.propose(node, self.width + len(taken))  # no listed actions: ask the policy
        return [c for c in proposed if not c.invalid and c.key not in taken][: self.width]
