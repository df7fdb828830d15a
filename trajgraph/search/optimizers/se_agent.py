"""SE-Agent: self-evolution over a population of whole trajectories.

Paper: Lin et al., "SE-Agent: Self-Evolution Trajectory Optimization in
Multi-Step Reasoning with LLM-Based Agents" (arXiv:2508.02085). A population of
trajectories evolves for G generations through three operators:

- revision: critique one trajectory and re-run it differently. Structural form:
  re-branch at its critical step (the largest reward drop along the path) with a
  different action. LLM form: a critique prompt yields a revised plan that is
  re-executed through the graph.
- recombination: build a new trajectory from two. Structural form: splice A's
  prefix onto B's suffix at a shared (equivalent) state, else at equal depth.
  LLM form: an LLM merges the two plans.
- refinement: select by reward while keeping diversity (distinct trajectories
  only); the LLM form also summarises the population into guidance.

Which form runs is stated, not guessed: with `llm=` (a litellm model string or a
LangChain chat model) each operator runs the paper's LLM-guided form, and falls
back to the structural form only when the LLM gives no usable plan; without one,
the structural forms run. Each member's `reason` starts with its operator and
form ("revision [llm]", "recombination [structural]"), and the search's stats
name the forms (`stats["operators"]`) and count how often each ran
(`stats["forms"]`).

Every member is a real trajectory executed through the graph; following a known
action costs no policy call, which is why the structural forms suit small models.

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

from trajgraph.search.optimizers.base import at_least, finite, success
from trajgraph.search.space import Node, Space
from trajgraph.search.tree import TreeLog
from trajgraph.store.json import canonical_key

_VOLATILE_STATE = ("history", "messages", "action", "reflections", "score")


def state_key(node: Node) -> str:
    """Equivalent decision points: same state apart from the path that led there."""
    return canonical_key({k: v for k, v in node.state.items() if k not in _VOLATILE_STATE})


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
    return node if node.terminal else await space.rollout(node)


@dataclass(frozen=True)
class SEAgent:
    population: int = 4
    generations: int = 3
    llm: Any = None  # litellm model string or LangChain chat model: turns on the LLM-guided forms
    success: float = 1.0
    seed: int = 0
    anytime: bool = True  # evolve past `generations` while the budget lasts (False: the paper's G)
    name: ClassVar[str] = "se-agent"

    def __post_init__(self) -> None:
        at_least(self, population=self.population)
        at_least(self, 0, generations=self.generations)
        finite(self, success=self.success)

    @property
    def open_ended(self) -> bool:  # anytime: only success, the budget or stagnation stop it
        return self.anytime

    async def search(self, space: Space, root: Node, log: TreeLog) -> Node:
        rng = random.Random(self.seed)
        forms: dict[str, dict[str, int]] = {op: {"llm": 0, "structural": 0} for op in ("revision", "recombination", "refinement")}
        log.stats["operators"] = "llm-guided" if self.llm is not None else "structural"
        log.stats["forms"] = forms
        members = await space.gather(*(space.rollout(root) for _ in range(self.population)))
        log.stats["generations"] = 0
        seen = {canonical_key(actions_of(m)) for m in members}
        generation = 0
        while generation < self.generations or self.anytime:
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
            for m in members:
                origin = m.reason.split(" [survived", 1)[0] or "initial rollout"
                m.reason = f"{origin} [survived generation {generation}]"
            new = {canonical_key(actions_of(o)) for o in offspring} - seen
            seen |= new
            if generation >= self.generations and not new and space.meter.spent.policy_calls == calls_before:
                log.stats["stagnated"] = True  # nothing new and no call spent: the next would repeat this one
                break
        return max(members, key=lambda m: (not m.invalid, m.outcome if m.outcome is not None else -1.0, m.score or 0.0))

    # -- revision ---------------------------------------------------------------------

    async def revise(self, space: Space, member: Node, forms: dict[str, dict[str, int]] | None = None) -> Node:
        forms = forms if forms is not None else _no_forms()
        if self.llm is not None:
            plan = await _llm_plan(self.llm, "revise", space, [member])
            if plan:
                forms["revision"]["llm"] += 1
                child = await follow(space, member.path()[0], plan)
                child.reason = "revision [llm]: LLM critique and revised plan"
                return child
        forms["revision"]["structural"] += 1
        path = member.path()
        scores = await space.score(path[1:]) if len(path) > 1 else []
        values = [path[0].score or 0.0, *scores]
        # critical step: the largest drop in reward; ties go to the latest step
        drops = [(values[i - 1] - values[i], i) for i in range(1, len(values))]
        _, critical = max(drops) if drops else (0.0, 1)
        parent, original = path[critical - 1], path[critical].action if critical < len(path) else None
        others = [c for c in await space.propose(parent, 3) if c.key != canonical_key(original)]
        if not others:
            return member
        child = await space.expand(parent, others[0])
        end = child if child.terminal else await space.rollout(child)
        end.reason = f"revision [structural]: re-branched at step {critical} with {others[0].text!r}"
        return end

    # -- recombination -----------------------------------------------------------------

    async def recombine(self, space: Space, a: Node, b: Node, rng: random.Random,
                        forms: dict[str, dict[str, int]] | None = None) -> Node:
        forms = forms if forms is not None else _no_forms()
        if self.llm is not None:
            plan = await _llm_plan(self.llm, "recombine", space, [a, b])
            if plan:
                forms["recombination"]["llm"] += 1
                child = await follow(space, a.path()[0], plan)
                child.reason = "recombination [llm]: LLM merged plans"
                return child
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
        child.reason = f"recombination [structural]: prefix of #{a.id} + suffix of #{b.id} {how}"
        return child

    # -- refinement ----------------------------------------------------------------------

    async def refine(self, space: Space, candidates: list[Node], forms: dict[str, dict[str, int]] | None = None) -> list[Node]:
        """Select by reward, keeping only distinct trajectories (invalid ones last); the
        LLM form also writes the population's lesson into `space.reflections`."""
        forms = forms if forms is not None else _no_forms()
        await space.score(candidates)
        distinct: dict[str, Node] = {}
        for m in candidates:
            key = canonical_key(actions_of(m))
            if key not in distinct or (m.score or 0.0) > (distinct[key].score or 0.0):
                distinct[key] = m
        ranked = sorted(distinct.values(),
                        key=lambda m: (m.invalid, -(m.outcome if m.outcome is not None else -1.0), -(m.score or 0.0), m.id))
        guidance = await _llm_text(self.llm, _summary_prompt(space, ranked)) if self.llm is not None else ""
        if guidance:
            space.reflections.append(guidance)
        forms["refinement"]["llm" if guidance else "structural"] += 1
        return ranked[: self.population]


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
