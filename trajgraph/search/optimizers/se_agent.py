"""SE-Agent: self-evolution over a population of whole trajectories.

Paper: Lin et al., "SE-Agent: Self-Evolution Trajectory Optimization in
Multi-Step Reasoning with LLM-Based Agents" (arXiv:2508.02085). A population of
trajectories evolves for G generations through three operators:

- revision: critique one trajectory and re-run it differently. Structural form:
  re-branch at its critical step, the step where its value fell most, with an
  action not tried there. A step's value is the environment's partial outcome
  when it gives one, else the best outcome the search has seen below that state
  (what the tree already knows, at no cost). LLM form: a critique prompt yields a
  revised plan that is re-executed through the graph.
- recombination: build a new trajectory from two. Structural form: splice A's
  prefix onto B's suffix at a shared state (a transposition: equal state keys,
  `Space.state_key`, at any depths), else at equal depth. LLM form: an LLM merges
  the two plans.
- refinement: remove detours (the steps between two visits of the same state)
  and re-run what is left, then select by fitness while keeping diversity
  (distinct trajectories only); the LLM form also summarises the population into
  guidance.

Which form runs is stated, not guessed: with `llm=` (a litellm model string or a
LangChain chat model) each operator runs the paper's LLM-guided form, and falls
back to the structural form only when the LLM gives no usable plan; without one,
the structural forms run. Each member's `reason` starts with its operator and
form ("revision [llm]", "recombination [structural]"), and the search's stats
name the forms (`stats["operators"]`), count how often each ran (`stats["forms"]`)
and give the population's best and mean fitness per generation
(`stats["fitness_per_generation"]`, `stats["mean_fitness_per_generation"]`).

Every member is a real trajectory executed through the graph; following a known
action costs no policy call (and, with transpositions, no environment step
either), which is why the structural forms suit small models. Its rollouts escape
when cornered (`Space.rollout(escape=True)`): where every way on is a finished
subtree or a loop back into the rollout's walk, it goes on as the agent alone would,
instead of circling through its walk until the budget ends (outcome-only key maze:
80% -> 95% of 20 tasks, benchmarks/README.md, "fourth round").

Leftover budget (`anytime=True`, the default): after the paper's `generations`,
evolution goes on, one generation at a time, until a member reaches `success`,
the budget stops it, or a generation neither finds a new trajectory nor spends a
policy call (the next one would repeat it). It is then open-ended
(a budget with a limit is required). `anytime=False` is the paper's fixed G
generations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from trajgraph.errors import ConfigError
from trajgraph.search.optimizers.base import at_least, fills_in, finite, success
from trajgraph.search.space import Node, Space
from trajgraph.search.tree import TreeLog
from trajgraph.store.json import canonical_key

_VOLATILE_STATE = ("history", "messages", "action", "reflections", "score")


def state_key(node: Node) -> str:
    """Equivalent decision points: the space's state key (else the state apart from its path)."""
    return node.key or canonical_key({k: v for k, v in node.state.items() if k not in _VOLATILE_STATE})


def actions_of(node: Node) -> list[Any]:
    return [n.action for n in node.path()[1:]]


async def follow(space: Space, node: Node, actions: list[Any]) -> Node:
    """Apply known actions (free) while they stay valid, then finish with the policy."""
    for action in actions:
        if node.terminal:
            return node
        cand = space.candidate(action, node.state)
        if cand.invalid:
            break
        node = await space.expand(node, cand)
    return node if node.terminal else await space.rollout(node, escape=True)


def fitness(node: Node) -> tuple[bool, float, float]:
    """Valid first, then outcome, then score."""
    return (not node.invalid, node.outcome if node.outcome is not None else -1.0, node.score or 0.0)


@dataclass(frozen=True)
class SEAgent:
    population: int = 4
    generations: int = 3
    llm: Any = None  # litellm model string or LangChain chat model: turns on the LLM-guided forms
    success: float = 1.0
    seed: int = 0
    anytime: bool = True  # evolve past `generations` while the budget lasts (False: the paper's G)
    widen: str = "auto"  # revision's admissible fill-ins: "value" always, "repeats" never, "auto": see fills_in
    name: ClassVar[str] = "se-agent"

    def __post_init__(self) -> None:
        at_least(self, population=self.population)
        at_least(self, 0, generations=self.generations)
        finite(self, success=self.success)
        if self.widen not in ("auto", "value", "repeats"):
            raise ConfigError(f"SEAgent(widen={self.widen!r}): choose from auto, value, repeats")

    @property
    def open_ended(self) -> bool:  # anytime: only success, the budget or stagnation stop it
        return self.anytime

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        rng = random.Random(self.seed)
        forms: dict[str, dict[str, int]] = _no_forms()
        log.stats["operators"] = "llm-guided" if self.llm is not None else "structural"
        log.stats["forms"] = forms
        log.stats["value_source"] = "partial outcome" if space.partial is not None else "best outcome seen below each state"
        best_per_gen: list[float] = log.stats.setdefault("fitness_per_generation", [])
        mean_per_gen: list[float] = log.stats.setdefault("mean_fitness_per_generation", [])
        members = _label(await self.initial(space, root), "initial rollout")
        log.stats["generations"] = 0
        seen = {canonical_key(actions_of(m)) for m in members}
        generation = 0
        while generation < self.generations or self.anytime:
            outcomes = [m.outcome if m.outcome is not None and not m.invalid else 0.0 for m in members]
            best_per_gen.append(max(outcomes))
            mean_per_gen.append(sum(outcomes) / len(outcomes))
            done = [m for m in members if success(m, self.success)]
            if done:
                return done[0]
            calls_before = space.meter.spent.policy_calls
            await space.score(members)
            offspring = [await self.revise(space, m, forms) for m in members]
            order = sorted(members, key=lambda m: -(m.score or 0.0))
            for a, b in zip(order, order[1:] + order[:1]):
                if a is not b:
                    offspring.append(await self.recombine(space, a, b, rng, forms))
            members = await self.refine(space, members + offspring, forms)
            generation += 1
            log.stats["generations"] = generation
            new = {canonical_key(actions_of(o)) for o in offspring} - seen
            seen |= new
            if generation >= self.generations and not new and space.meter.spent.policy_calls == calls_before:
                log.stats["stagnated"] = True  # nothing new and no call spent: the next would repeat this one
                break
        # an operator's side branch may have finished better than any member kept (a real trajectory)
        found = space.best_terminal()
        return max([*members, found] if found is not None else members, key=fitness)

    async def initial(self, space: Space, root: Node) -> list[Node]:
        """The initial population: two rollouts side by side, then one at a time while
        less than half the call budget is spent. A population whose rollouts take the
        whole budget never reaches a generation and is best-of-n: on the demo's TextWorld
        games (up to 26 decisions a rollout, 100 calls) three rollouts did, and SE-Agent
        solved 6 of 20 with each of four reward models; stopping at half solved 7, 6, 6, 8,
        7 with five (benchmarks/README.md, "TextWorld gate"). Short rollouts (the
        known-optimum suite) still fill the population."""
        first = min(2, self.population)
        members = list(await space.gather(*(space.rollout(root, escape=True) for _ in range(first))))
        limit = space.meter.budget.policy_calls
        while len(members) < self.population and (limit is None or 2 * space.meter.spent.policy_calls < limit):
            members.append(await space.rollout(root, escape=True))
        return members

    # -- revision ---------------------------------------------------------------------

    async def revise(self, space: Space, member: Node, forms: dict[str, dict[str, int]] | None = None) -> Node:
        forms = forms if forms is not None else _no_forms()
        if self.llm is not None:
            plan = await _llm_plan(self.llm, "revise", space, [member])
            if plan:
                forms["revision"]["llm"] += 1
                return _label([await follow(space, member.path()[0], plan)], "revision [llm]: LLM critique and revised plan")[0]
        forms["revision"]["structural"] += 1
        path = member.path()
        if len(path) < 2:
            return member
        values = await self.values(space, path)
        # critical step: the largest fall in value; ties go to the latest step
        fall, critical = max((values[i - 1] - values[i], i) for i in range(1, len(values)))
        if fall <= 0:  # no step lost value (it rose into a trap or the horizon): the step that ended it
            critical = len(path) - 1
        for step in [critical, *range(len(path) - 1, 0, -1)]:  # where nothing new is left, an earlier step
            child = await self._step(space, path[step - 1], path[step], {n.key for n in path[:step]})
            if child is not None:
                end = child if child.terminal else await self._rewrite(space, child, {n.key for n in path[:step]})
                return _label([end], f"revision [structural]: re-branched at step {step} (value fell there) with {child.action_text!r}, rewritten from there")[0]
        return member

    async def _step(self, space: Space, node: Node, avoid: Node | None, visited: set[str]) -> Node | None:
        """One rewritten step at `node` (other than `avoid`, the member's own): the policy's
        proposal and, when the environment gives a partial outcome or the proposal was tried
        already, every admissible action not tried; besides them, the branches already made
        here that are still open (their subtree not finished). The best by value (no return
        to a state already on the path; ties: the policy's own proposal). None when nothing
        new is left here."""
        tried = {canonical_key(ch.action) for ch in node.children}
        others = [c for c in await space.propose(node, 1) if c.key not in tried]
        if fills_in(space, self.widen) and (space.partial is not None or not others):
            others += await space.admissible(node, tried | {c.key for c in others})
        new = [c for c in await space.gather(*(space.expand(node, c) for c in others)) if not c.invalid]
        known = [ch for ch in node.children if ch not in new and ch is not avoid and not ch.invalid and not space.is_closed(ch)]
        children = new + known
        if not children:
            return None
        values = await self.worth(space, children)
        return max(zip(values, children), key=lambda vc: (vc[1].key not in visited, vc[0]))[1]

    async def worth(self, space: Space, children: list[Node]) -> list[float]:
        """What a rewritten step is worth: its value (`values`) when a reward model or partial
        outcome gives one; else its outcome when finished, the best outcome seen below it, or,
        where nothing below it has finished yet, more than any outcome (an unexplored branch
        is worth trying before one whose end is known)."""
        if space.partial is not None or space.reward is not None:
            return await self.values(space, children)
        best = _best_below(space)
        return [(c.outcome or 0.0) if c.terminal else best.get(c.key, float("inf")) for c in children]

    async def _rewrite(self, space: Space, node: Node, visited: set[str]) -> Node:
        """The rest of the trajectory, rewritten step by step (value-guided with a partial
        outcome; the policy's own samples otherwise, turned away from finished subtrees)."""
        if space.partial is None:
            return await space.rollout(node, escape=True)
        visited = set(visited)
        while not node.terminal:
            visited.add(node.key)
            nxt = await self._step(space, node, None, visited)
            if nxt is None:
                return node
            node = nxt
        return node

    async def values(self, space: Space, path: list[Node]) -> list[float]:
        """Each step's value: the search's reward model when given; else the partial outcome
        when the environment gives one; else the best outcome the search has reached below
        that state (transpositions included)."""
        if space.reward is not None:
            return await space.score(path)
        if space.partial is not None:
            return await space.score(path, space.partial_scorer())
        best = _best_below(space)
        return [best.get(n.key, 0.0) for n in path]

    # -- recombination -----------------------------------------------------------------

    async def recombine(self, space: Space, a: Node, b: Node, rng: random.Random,
                        forms: dict[str, dict[str, int]] | None = None) -> Node:
        forms = forms if forms is not None else _no_forms()
        if self.llm is not None:
            plan = await _llm_plan(self.llm, "recombine", space, [a, b])
            if plan:
                forms["recombination"]["llm"] += 1
                return _label([await follow(space, a.path()[0], plan)], "recombination [llm]: LLM merged plans")[0]
        forms["recombination"]["structural"] += 1
        pa, pb = a.path(), b.path()
        keys_b = {state_key(n): j for j, n in enumerate(pb[:-1])}
        shared = [(i, keys_b[state_key(n)]) for i, n in enumerate(pa[:-1]) if not n.terminal and state_key(n) in keys_b]
        # prefer the deepest shared state where b's continuation differs from a's
        shared = [(i, j) for i, j in shared if canonical_key(actions_of(pa[-1])[i:]) != canonical_key(actions_of(pb[-1])[j:])]
        if shared:
            i, j = max(shared)
            how = f"at a shared state (a step {i}, b step {j})"
        else:
            i = j = rng.randint(0, max(0, min(len(pa), len(pb)) - 2))
            how = f"at equal depth {i}"
        child = await follow(space, pa[i], actions_of(pb[-1])[j:])
        return _label([child], f"recombination [structural]: prefix of #{a.id} + suffix of #{b.id} {how}")[0]

    # -- refinement ----------------------------------------------------------------------

    async def refine(self, space: Space, candidates: list[Node], forms: dict[str, dict[str, int]] | None = None) -> list[Node]:
        """Remove detours (re-run without the steps between two visits of a state), then
        select by fitness, keeping only distinct trajectories (invalid ones last); the
        LLM form also writes the population's lesson into `space.reflections`."""
        forms = forms if forms is not None else _no_forms()
        for m in list(candidates):
            shorter = without_detours(m)
            if shorter is not None:
                end = await follow(space, m.path()[0], shorter)
                candidates.append(_label([end], f"refinement: #{m.id} without its detours")[0])
        await space.score(candidates)
        distinct: dict[str, Node] = {}
        for m in candidates:
            key = canonical_key(actions_of(m))
            if key not in distinct or (m.score or 0.0) > (distinct[key].score or 0.0):
                distinct[key] = m
        ranked = sorted(distinct.values(), key=lambda m: (m.invalid, -fitness(m)[1], -(m.score or 0.0), m.id))
        guidance = await _llm_text(self.llm, _summary_prompt(space, ranked)) if self.llm is not None else ""
        if guidance:
            space.reflections.append(guidance)
        forms["refinement"]["llm" if guidance else "structural"] += 1
        return ranked[: self.population]


def without_detours(member: Node) -> list[Any] | None:
    """The member's actions with every loop cut out (from a state to its last later
    visit); None when it has none."""
    path = member.path()
    last = {n.key: i for i, n in enumerate(path) if n.key and not n.terminal}
    actions, i = [], 0
    while i < len(path) - 1:
        i = max(i, last.get(path[i].key, i))
        if i < len(path) - 1:
            actions.append(path[i + 1].action)
        i += 1
    return actions if len(actions) < len(path) - 1 else None


def _best_below(space: Space) -> dict[str, float]:
    """State key -> the best outcome of any finished trajectory through that state."""
    best: dict[str, float] = {}
    for n in space.nodes:
        if n.terminal and not n.invalid and n.outcome is not None:
            for a in n.path():
                best[a.key] = max(best.get(a.key, float("-inf")), n.outcome)
    return best


def _label(members: list[Node], how: str) -> list[Node]:
    """Say where a member came from, once: a trajectory reached again keeps its first origin."""
    for m in members:
        m.reason = m.reason or how
    return members


def _no_forms() -> dict[str, dict[str, int]]:
    return {op: {"llm": 0, "structural": 0} for op in ("revision", "recombination", "refinement")}


def _trajectory_text(node: Node) -> str:
    lines = [f"{i}. {a} -> {o}" for i, (a, o) in enumerate(node.turns(), 1)]
    return "\n".join(lines) + f"\nfinal reward: {node.outcome}"


def _summary_prompt(space: Space, members: list[Node]) -> str:
    body = "\n\n".join(f"Trajectory {i + 1}:\n{_trajectory_text(m)}" for i, m in enumerate(members[:4]))
    return f"Task: {space.task_text}\n\n{body}\n\nIn three sentences: what separates the better trajectories from the worse?"


async def _llm_text(llm: Any, prompt: str) -> str:
    from trajgraph.search.policy import complete_text

    try:
        return await complete_text(llm, prompt)
    except Exception:  # guidance is optional; the structural operators still run
        return ""


async def _llm_plan(llm: Any, kind: str, space: Space, members: list[Node]) -> list[dict[str, str]]:
    """Ask for a plan as lines `ACTION: <command>`; only env-loop actions can be planned."""
    body = "\n\n".join(f"Trajectory {chr(65 + i)}:\n{_trajectory_text(m)}" for i, m in enumerate(members))
    ask = ("Critique this trajectory, find the step where it went wrong, and write a better plan."
           if kind == "revise" else "Combine the strengths of these trajectories into one better plan.")
    prompt = f"Task: {space.task_text}\n\n{body}\n\n{ask}\nEnd with the plan, one line per step: ACTION: <command>"
    text = await _llm_text(llm, prompt)
    steps = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().upper().startswith("ACTION:")]
    return [{"action": s} for s in steps if s]
