"""MCTS over decision points, as in LATS, with AlphaZero's priors where the policy gives them.

Paper: Zhou et al., "Language Agent Tree Search Unifies Reasoning, Acting, and
Planning in Language Models" (ICML 2024, arXiv:2310.04406). One iteration is
the paper's six operations, one method each:

    leaf = select(root)                      # UCT (PUCT with priors) descent to a node worth expanding
    children = expand(space, leaf)           # k sampled actions, each a real branch
    values = evaluate(space, children)       # reward model; else partial outcome; else self-consistency
    end = simulate(space, best child)        # LATS' rollout to a terminal state
    backpropagate(path, value)               # running mean up the selected path
    reflect(space, end)                      # a failed terminal becomes a lesson

Beyond the paper, each a setting (the paper's behaviour is the other value):
- transpositions: statistics are kept per state key (`Space.state_key`), so two
  branches that reach the same state share them, and descent continues from the
  first node that reached it (a state is expanded once);
- `widen="value"`: a node gets more children as its visits grow (progressive
  widening, limit max(k, sqrt(visits))); when the policy repeats itself the
  state's admissible actions fill in (`widen="repeats"`: LATS' fixed k, re-sampled
  up to `max_expansions` times; `"auto"`, the default: "value" unless a learned
  reward model values the children, see `fills_in`);
- `prior="auto"`: PUCT, Q + c·P·sqrt(N)/(1+n) (Silver et al. 2017), when every
  child carries the policy's probability; UCT otherwise (`prior="uct"` always);
- `value="auto"`: without a reward model, a child is valued by the environment's
  partial outcome when it gives one; else by LATS' self-consistency score (the
  share of the k samples that chose it, which also serves as its PUCT prior) and
  one simulation from the most-voted child, whose nodes join the tree (progressive
  widening then starts from one child, sqrt(visits), so a simulation's path is
  descended before it is widened). `"simulate"`: a simulation from every child.
  Preference pairs then come from the outcomes backed up below each child when the
  search ends (`_outcome_pairs`), never from vote shares;
- `backup="auto"`: where the space is deterministic (transpositions on) and values
  are outcomes of simulations, a node keeps the best value found below it (max
  backup, through every lineage of the end reached) instead of the running mean:
  the policy's slips then cannot hide a branch that holds the optimum.

Reflections reach later proposals as `state["reflections"]`. It stops at the first
success; otherwise it grows the tree until the budget stops it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from trajgraph.errors import ConfigError
from trajgraph.search.optimizers.base import at_least, fills_in, finite, success
from trajgraph.search.space import Node, Space
from trajgraph.search.tree import TreeLog
from trajgraph.store.json import canonical_key


def uct(child: Node, parent_visits: int, c: float) -> float:
    """value + c * sqrt(ln N / n); unvisited children first."""
    if child.visits == 0:
        return math.inf
    return (child.value or 0.0) + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def puct(child: Node, parent_visits: int, c: float) -> float:
    """AlphaZero's Q + c * P * sqrt(N) / (1 + n); an unvisited child's Q is 0."""
    return (child.value or 0.0) + c * (child.prior or 0.0) * math.sqrt(max(parent_visits, 1)) / (1 + child.visits)


def backpropagate(node: Node | None, value: float) -> None:
    """Running mean of every value seen below each ancestor."""
    while node is not None:
        node.visits += 1
        node.value = (node.value or 0.0) + (value - (node.value or 0.0)) / node.visits
        node = node.parent


CONSISTENCY = "self-consistency + simulation"  # the value source without a reward model or partial outcome


@dataclass
class _Progress:
    """What one search remembers between iterations (not in the tree itself)."""

    expansions: dict[int, int] = field(default_factory=dict)  # node id -> times expanded
    done: set[int] = field(default_factory=set)  # nodes whose whole subtree is finished
    path: list[Node] = field(default_factory=list)  # the last selection's path, root first
    stats: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # state key -> (visits, mean value)
    share: bool = True  # transpositions share statistics (False: each node its own, as in LATS)
    best: bool = False  # back up the best value seen below a node, not the running mean
    classic: bool = False  # progressive widening from one child (sqrt(visits)), not from k
    widen: str = "value"  # the widening this search runs ("value" or "repeats": `MCTS.widen` resolved)


@dataclass(frozen=True)
class MCTS:
    k: int = 3  # actions sampled per expansion
    c: float = 1.0  # exploration weight
    simulate_best: bool | None = None  # roll out from the best new child after evaluation; None: when there is no reward model
    reflect_with: Callable[[Node], str] | None = None  # failed terminal -> lesson (LATS' reflection)
    success: float = 1.0
    max_expansions: int = 3  # re-sample a node whose k samples merged into fewer than k distinct actions
    widen: str = "auto"  # "value": progressive widening + admissible actions; "repeats": LATS' fixed k; "auto": see fills_in
    prior: str = "auto"  # "auto": PUCT when the policy gives priors; "uct": always UCT
    value: str = "auto"  # without a reward model: "auto" (partial outcome, else simulation), "simulate", "partial"
    backup: str = "auto"  # "mean": LATS' running mean; "max": best value below; "auto": max in a deterministic space
    name: ClassVar[str] = "mcts"
    open_ended: ClassVar[bool] = True  # grows the tree until success or the budget stops it

    def __post_init__(self) -> None:
        at_least(self, k=self.k, max_expansions=self.max_expansions)
        finite(self, c=self.c, success=self.success)
        if self.c < 0:
            raise ConfigError(f"MCTS(c={self.c!r}): the exploration weight must be >= 0")
        for setting, allowed in (("widen", ("auto", "value", "repeats")), ("prior", ("auto", "uct")), ("value", ("auto", "simulate", "partial")),
                                 ("backup", ("auto", "mean", "max"))):
            if getattr(self, setting) not in allowed:
                raise ConfigError(f"MCTS({setting}={getattr(self, setting)!r}): choose from {', '.join(allowed)}")

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        if root.terminal:
            return root
        source = self._source(space)
        progress = _Progress(share=space.transpositions, best=self._max_backup(space), classic=source == CONSISTENCY,
                             widen="value" if fills_in(space, self.widen) else "repeats")
        log.stats["value_source"] = source
        log.notes.append(f"mcts values unfinished states by {source}")
        # a vote share says what the policy liked, not what worked: with it, the preference pairs
        # are written once the search ends, from the outcomes backed up below each child
        try:
            return await self._search(space, root, log, source, progress)
        finally:
            if source == CONSISTENCY:
                self._outcome_pairs(space, log, progress)

    async def _search(self, space: Space, root: Node, log: TreeLog, source: str, progress: _Progress) -> Node:
        while (leaf := self.select(root, progress)) is not None:
            path = list(progress.path)
            children = await self.expand(space, leaf, progress)
            if not children:
                continue
            values, ends = await self.evaluate(space, children, source)
            valid = [(ch, v) for ch, v in zip(children, values) if not ch.invalid]
            for (child, v), end in zip(valid, [e for ch, e in zip(children, ends) if not ch.invalid]):
                # a simulation's nodes are real branches: they join the tree with its value
                # (a vote share is a prior, not a value: only finished children back up then)
                if source != CONSISTENCY or child.terminal:
                    self._backup(_through(path, child, end, progress.best), v, progress)
            for child, end in zip(children, ends):
                if child.invalid:
                    continue
                if success(end, self.success):
                    end.reason = "reached success"
                    if source != CONSISTENCY:
                        self._pairs(log, leaf, child, valid)
                    return end
                self.reflect(space, end)
            if not valid:
                continue
            best, _ = max(valid, key=lambda cv: cv[1])
            if source != CONSISTENCY:
                self._pairs(log, leaf, best, valid)
            if source == CONSISTENCY:  # LATS' simulation from the child the policy voted for most
                best = max(((ch, v) for ch, v in valid if not ch.terminal), key=lambda cv: cv[1], default=(best, 0.0))[0]
            if (self._simulates_best(space) or source == CONSISTENCY) and not best.terminal:
                end = await self.simulate(space, best)
                value = end.outcome if end.outcome is not None else (await space.score([end]))[0]
                self._backup(_through(path, best, end, progress.best), value, progress)
                if success(end, self.success):
                    end.reason = "reached success (simulation)"
                    return end
                self.reflect(space, end)
        log.stats["exhausted"] = True  # every branch finished without success
        return space.best_terminal() or root

    # -- the six LATS operations ----------------------------------------------------------

    def select(self, root: Node, progress: _Progress | None = None) -> Node | None:
        """Descend by UCT (PUCT with priors) to a node to expand: a leaf, or a node the
        widening rule lets grow. A transposition continues from the first node that
        reached its state; one that loops back onto the path is a detour, never
        taken. Finished subtrees are skipped; None when all are finished."""
        progress = _Progress() if progress is None else progress
        done = progress.done
        node, progress.path = root, [root]
        while True:
            if not node.terminal and (not node.children or self._widens(node, progress)):
                return node
            on_path = {n.id for n in progress.path}
            live = [ch for ch in node.children if not ch.invalid and not ch.terminal
                    and _at(ch).id not in done and _at(ch).id not in on_path]
            if not live and self._widens(node, progress, limit=10**9):  # all finished here, but more can be tried
                return node
            if not live:  # everything below is finished: never select this subtree again
                done.add(node.id)
                if node is root:
                    return None
                node, progress.path = root, [root]
                continue
            parent = node
            for ch in live:  # a state's statistics are shared by every node that reached it
                ch.visits, ch.value = progress.stats.get(ch.key, (ch.visits, ch.value)) if progress.share else (ch.visits, ch.value)
            rank = puct if self._puct(live) else uct
            child = max(live, key=lambda ch: rank(ch, parent.visits, self.c))
            node = _at(child)
            progress.path.append(node)

    async def expand(self, space: Space, leaf: Node, progress: _Progress) -> list[Node]:
        """Sample up to k actions not yet tried at `leaf` and branch on each; with
        `widen="value"`, admissible actions fill in for samples that repeat."""
        progress.expansions[leaf.id] = progress.expansions.get(leaf.id, 0) + 1
        known = {canonical_key(ch.action) for ch in leaf.children}
        want = self.k - len(known) if known else self.k
        if progress.widen == "value":
            want = min(self.k, max(1, self._limit(leaf, progress) - len(known)))
            if not known or (progress.classic and not space.actions_at(leaf)):  # samples are the only way to new actions
                want = self.k
        sampled = await space.propose(leaf, want)
        candidates = [c for c in sampled if c.key not in known]
        voted = len(candidates)  # the rest are admissible fill-ins nobody sampled
        if progress.widen == "value" and len(candidates) < want:  # the policy repeats itself: reach the rest
            candidates += (await space.admissible(leaf, known | {c.key for c in candidates}))[: want - len(candidates)]
        if not candidates:
            return []
        children = list(await space.gather(*(space.expand(leaf, c) for c in candidates)))
        if self._source(space) == CONSISTENCY:  # the vote share stands in for the prior the policy did not give
            # add-one smoothed over the actions branched here: an action nobody sampled keeps some prior,
            # or PUCT would never try it where the policy's favourite is a lure
            drawn = sum(c.count for c in sampled) + len(candidates)
            for i, (child, cand) in enumerate(zip(children, candidates)):
                child.prior = cand.prior if cand.prior is not None else ((cand.count if i < voted else 0) + 1) / drawn
        return children

    async def evaluate(self, space: Space, children: list[Node], source: str = "simulation") -> tuple[list[float], list[Node]]:
        """(value of each child, the node its value was read at). With a reward model:
        its score (outcome at terminals); with the environment's partial outcome: that.
        Otherwise LATS' fallback: one simulation from each child, valued by its outcome."""
        for child in children:
            if child.invalid:
                child.reason = child.reason or "invalid action"
        if space.reward is not None or self.simulate_best is False:
            return await space.score(children), list(children)
        if source == "partial outcome":
            return await space.score(children, space.partial_scorer()), list(children)
        if source == CONSISTENCY:  # LATS' self-consistency score: the share of samples that chose it
            values = [(ch.outcome or 0.0) if ch.terminal else (ch.prior or 0.0) for ch in children]
            for child, v in zip(children, values):
                child.score = v
            return values, list(children)
        ends = await space.gather(*(self.simulate(space, ch) if not (ch.terminal or ch.invalid) else _same(ch) for ch in children))
        values = [e.outcome if e.outcome is not None else 0.0 for e in ends]
        for child, v in zip(children, values):
            child.score = v
        return values, ends

    async def simulate(self, space: Space, node: Node) -> Node:
        """Finish the trajectory from `node` with the policy's first sample at each step."""
        return await space.rollout(node)

    @staticmethod
    def backpropagate(node: Node | None, value: float) -> None:
        """Running mean of every value seen below each ancestor (`backpropagate` above)."""
        backpropagate(node, value)

    def reflect(self, space: Space, end: Node) -> None:
        """A finished trajectory below success becomes a lesson later proposals see."""
        if end.terminal and not end.invalid and self.reflect_with is not None:
            space.reflections.append(self.reflect_with(end))

    # -- the settings beyond the paper ------------------------------------------------------

    def _source(self, space: Space) -> str:
        if space.reward is not None:
            return "reward model"
        if self.value != "simulate" and space.partial is not None:
            return "partial outcome"
        if self.value == "auto":
            return CONSISTENCY
        return "simulation"

    def _limit(self, node: Node, progress: _Progress) -> int:
        """How many children a node may have now: k, growing with the square root of its visits.
        Valued by simulation alone, the classic rule, sqrt(visits) from 1: a simulation's path
        (one child a node) is then descended, not widened at once with actions nobody voted for."""
        if progress.classic:
            return max(1, math.ceil(math.sqrt(node.visits)))
        return max(self.k, math.ceil(math.sqrt(node.visits)))

    def _widens(self, node: Node, progress: _Progress, limit: int | None = None) -> bool:
        tries = progress.expansions.get(node.id, 0)
        cap = self._limit(node, progress) if limit is None else limit
        if progress.widen == "repeats":
            return len(node.children) < self.k and tries < self.max_expansions
        listed = node.state.get("actions")
        room = len(listed) if isinstance(listed, list) and listed else None
        if room is not None:  # the state lists its actions: every one can be reached
            return len(node.children) < min(room, cap)
        return len(node.children) < cap and tries < self.max_expansions + math.isqrt(node.visits)

    def _puct(self, children: list[Node]) -> bool:
        return self.prior == "auto" and all(ch.prior is not None for ch in children)

    @staticmethod
    def _backup(path: list[Node], value: float, progress: _Progress) -> None:
        """Backpropagation along the selected path; statistics are kept per state key,
        so every node of a state (its transpositions) reads the same visits and value."""
        for node in reversed(path):
            own = (node.visits, node.value or 0.0)
            n, shared = progress.stats.get(node.key, own) if node.key and progress.share else own
            mean = shared or 0.0
            n, mean = n + 1, (max(mean, value) if progress.best and n else mean + (value - mean) / (n + 1))
            if node.key and progress.share:
                progress.stats[node.key] = (n, mean)
            node.visits, node.value = n, mean

    def _max_backup(self, space: Space) -> bool:
        """Max backup where the same actions always lead to the same end (transpositions on):
        a state is then worth the best trajectory found through it, and a mean would let
        the policy's own slips hide a branch that holds the optimum."""
        return self.backup == "max" or (self.backup == "auto" and space.transpositions and self._source(space) in ("simulation", CONSISTENCY))

    def _simulates_best(self, space: Space) -> bool:
        return bool(self.simulate_best) and space.reward is not None

    @staticmethod
    def _pairs(log: TreeLog, at: Node, best: Node, scored: list[tuple[Node, float]]) -> None:
        for other, s in scored:
            if other is not best and s < (best.score or 0.0):
                log.pair("mcts", at, best, other, best.score, s)

    @staticmethod
    def _outcome_pairs(space: Space, log: TreeLog, progress: _Progress) -> None:
        """Pairs by what each child is known to reach: at every decision point, the child
        with the best value backed up from finished trajectories (an outcome, or the best
        or mean outcome below it) over each child that reached less. Children with nothing
        finished below them are left out: no outcome says how they do."""
        for at in space.nodes:
            known: list[tuple[Node, float]] = []
            for ch in at.children:
                if ch.invalid:
                    continue
                visits, value = progress.stats.get(ch.key, (ch.visits, ch.value)) if progress.share and ch.key else (ch.visits, ch.value)
                if ch.terminal and ch.outcome is not None:
                    known.append((ch, float(ch.outcome)))
                elif visits and value is not None:
                    known.append((ch, float(value)))
            if len(known) < 2:
                continue
            best, top = max(known, key=lambda cv: cv[1])
            for other, v in known:
                if other is not best and v < top:
                    log.pair("mcts", at, best, other, top, v)


async def _same(node: Node) -> Node:
    return node


def _through(path: list[Node], child: Node, end: Node, everywhere: bool) -> list[Node]:
    """The nodes a value found at `end` backs up through: the selected path and the child's
    way to `end`; with max backup (`everywhere`), also every other node `end` descends
    from (its lineage may run through other transpositions: each reaches it too), each
    state once. A running mean counts only the path selected, as UCT assumes."""
    if not everywhere:
        return [*path, *end.path()[child.depth:]]
    seen: dict[str, Node] = {}
    for node in [*path, child, *end.path()]:
        seen.setdefault(node.key or str(node.id), node)
    return list(seen.values())


def _at(node: Node) -> Node:
    """Where descent continues: the first node that reached this state."""
    return node.twin if node.twin is not None else node
