"""Training examples for a policy, read out of a store.

Two kinds, both over env-loop states (`trajgraph.testing.tiny_env.EnvState`:
`task`, `observation`, admissible `actions`, `history`):

- `Decision`: a state on a successful trajectory and the action taken there,
  with every admissible action the agent could have taken instead (behaviour
  cloning of filtered successes: "rejection sampling fine-tuning", Yuan et al.
  2023; the SFT half of ETO, Song et al. 2024). States are rebuilt by replaying
  the recorded node updates over the run's input, so they are exactly what the
  decision node saw.
- `Preference`: a step-level pair from a search (RRO, Cao et al. 2025; MCTS /
  best-of-n siblings): at one state, `chosen` beat `rejected`.
- Monte Carlo pairs (`mc_preferences`): every finished trajectory, failed ones
  too, gives its final outcome to each (state, action) it passed through; where
  one state was left by different actions, the action whose trajectories ended
  better on average is preferred (step-level Monte Carlo values, as IPR, Xiong
  et al. 2024, estimates them for its step-level pairs). Graded outcomes (a
  partial score) make failed rollouts informative, and a search tree's shared
  prefixes give many rollouts per state near the root.

A search tree writes the same prefix into many rollouts, so decisions are
de-duplicated by (state, action) and carry a count.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.export.read import effective_outcome, snapshot
from trajgraph.render import render_action
from trajgraph.store import Store
from trajgraph.store.json import to_jsonable
from trajgraph.trajectory import Run, Step

_STATE_KEYS = ("task", "objective", "observation", "actions", "history")


class NoTrainingDataError(ConfigError):
    """The store holds nothing a policy can learn from (no successful runs, no pairs)."""


@dataclass(frozen=True)
class Decision:
    """One decision on a successful trajectory: the state, the admissible actions, the one taken."""

    state: dict[str, Any]  # task, observation, actions, history ({"action", "observation"} turns)
    action: str
    run_id: str
    task: str | None
    count: int = 1  # how many stored trajectories took this action from this state


@dataclass(frozen=True)
class Preference:
    """At `state`, `chosen` was preferred to `rejected` by a search (`source`: rro, mcts, best_of_n)."""

    state: dict[str, Any]
    chosen: str
    rejected: str
    source: str
    run_id: str
    task: str | None


def state_key(state: Mapping[str, Any]) -> str:
    """A content key of what a policy decides from (objective, past actions, observation, choices)."""
    history = [str(h.get("action")) for h in state.get("history") or [] if isinstance(h, Mapping)]
    text = json.dumps([state.get("task") or state.get("objective"), history, str(state.get("observation") or ""),
                       list(state.get("actions") or [])], default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def _apply(state: dict[str, Any], update: Any) -> None:
    """Merge one node update into an env-loop state (history has an add reducer; the rest overwrite)."""
    data = to_jsonable(update)
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if key == "history" and isinstance(value, list):
            state["history"] = list(state.get("history") or []) + value
        else:
            state[key] = value


def _action_text(action: Any) -> str | None:
    data = to_jsonable(action)
    if isinstance(data, dict) and isinstance(data.get("action"), str):
        return str(data["action"])
    return None


def _policy_view(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: state[k] for k in _STATE_KEYS if k in state}
    out["history"] = [{"action": h.get("action"), "observation": h.get("observation", "")}
                      for h in state.get("history") or [] if isinstance(h, Mapping)]
    return out


SITUATIONS = ("observation", "commands")


def run_decisions(run: Run, steps: Sequence[Step], *, trim_loops: bool = False,
                  situation: str = "observation") -> list[tuple[dict[str, Any], str]]:
    """(state the decision node saw, action it took) for every decision step of an env-loop run.

    trim_loops: drop the decisions of any stretch that came back to a situation
    (observation, admissible actions, score) seen before on the same run: on a
    successful run they are detours (go east / go west, take / put back), and
    cloning them teaches the loop. The decision that leaves the loop stays.

    situation: what counts as "the same situation". "observation": the observation,
    the admissible actions and the score (environments with a fixed action set:
    the observation is the state). "commands": the admissible actions and the
    score only, for text games whose observation is feedback on the last command
    while the admissible commands reflect the world (TextWorld: an `examine`,
    an open/close or a take/put pair then shows as the no-progress loop it is)."""
    return _walk(run, steps, trim_loops, situation)[0]


def run_detours(run: Run, steps: Sequence[Step], situation: str = "observation") -> list[tuple[dict[str, Any], str]]:
    """The first decision of every stretch that led back to a situation seen before: an action
    that made no progress at all (in a deterministic environment, a wasted step, whatever the outcome)."""
    return _walk(run, steps, True, situation)[1]


def _walk(run: Run, steps: Sequence[Step], trim: bool, situation: str) -> tuple[list[tuple[dict[str, Any], str]], list[tuple[dict[str, Any], str]]]:
    data = to_jsonable(run.input)
    state: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
    out: list[tuple[dict[str, Any], str]] = []
    loops: list[tuple[dict[str, Any], str]] = []
    if situation not in SITUATIONS:
        raise ConfigError(f"situation must be one of {', '.join(SITUATIONS)}, got {situation!r}")
    seen = {_situation(state, situation): 0}
    for step in steps:
        if step.action is not None:
            action = _action_text(step.action)
            if action is not None and state.get("actions"):
                out.append((_policy_view(state), action))
        _apply(state, step.update)
        if trim and step.action is None:
            here = _situation(state, situation)
            if here in seen:
                if seen[here] < len(out):
                    loops.append(out[seen[here]])
                del out[seen[here]:]  # back where we were: the decisions since were a detour
            seen = {k: v for k, v in seen.items() if v <= len(out)}
            seen.setdefault(here, len(out))
    return out, loops


def _situation(state: Mapping[str, Any], situation: str) -> str:
    observation = str(state.get("observation") or "") if situation == "observation" else ""
    return json.dumps([observation, sorted(str(a) for a in state.get("actions") or []), state.get("score")], default=str)


def _runs(db: Store, tags: Sequence[str], tasks: Iterable[str] | None) -> list[Run]:
    """Finished trajectories (not search containers), newest first; with `tags`, those whose
    own tags or whose search run's tags include every tag."""
    wanted = set(tasks) if tasks is not None else None
    parents: dict[str, bool] = {}

    def tagged(run: Run) -> bool:
        if all(t in run.tags for t in tags):
            return True
        if run.parent_id is None:
            return False
        if run.parent_id not in parents:
            try:
                parent = db.run(run.parent_id)
                parents[run.parent_id] = all(t in parent.tags for t in tags)
            except KeyError:
                parents[run.parent_id] = False
        return parents[run.parent_id]

    return [r for r in db.runs(newest_first=False) if r.kind != "search" and r.status == "succeeded"
            and (wanted is None or r.task in wanted) and (not tags or tagged(r))]


def decisions(store: Store | str | Path, *, success_threshold: float = 1.0, tags: Sequence[str] = (),
              tasks: Iterable[str] | None = None, trim_loops: bool = True, situation: str = "observation") -> list[Decision]:
    """De-duplicated decisions of every run whose outcome reaches `success_threshold`.

    `tags`: only runs (or rollouts of searches) carrying all of them; `tasks`: only these task ids;
    `trim_loops`: leave out detours that came back to where they started (see `run_decisions`)."""
    seen: dict[tuple[str, str], Decision] = {}
    with snapshot(store) as db:
        for run in _runs(db, tags, tasks):
            steps = db.steps(run.id)
            outcome = effective_outcome(run, steps)
            if outcome is None or outcome < success_threshold:
                continue
            for state, action in run_decisions(run, steps, trim_loops=trim_loops, situation=situation):
                key = (state_key(state), action)
                old = seen.get(key)
                seen[key] = Decision(state, action, run.id, run.task, 1) if old is None else \
                    Decision(old.state, old.action, old.run_id, old.task, old.count + 1)
    return _in_content_order(seen)


def preferences(store: Store | str | Path, *, sources: Sequence[str] | None = None, tags: Sequence[str] = (),
                tasks: Iterable[str] | None = None) -> list[Preference]:
    """Step-level pairs of env-loop searches, as (state, chosen, rejected); ties and same-action pairs dropped."""
    wanted = set(tasks) if tasks is not None else None
    out: dict[tuple[str, str, str], Preference] = {}
    with snapshot(store) as db:
        searches: dict[str, Run | None] = {}
        for pair in db.pairs():
            if (sources is not None and pair.source not in sources) or (wanted is not None and pair.task not in wanted):
                continue
            if pair.run_id not in searches:
                try:
                    searches[pair.run_id] = db.run(pair.run_id)
                except KeyError:
                    searches[pair.run_id] = None
            search = searches[pair.run_id]
            if search is None or not all(t in search.tags for t in tags):
                continue
            chosen, rejected = _side(pair.chosen), _side(pair.rejected)
            if chosen is None or rejected is None or chosen == rejected:
                continue
            if pair.chosen_score is not None and pair.rejected_score is not None and pair.chosen_score <= pair.rejected_score:
                continue
            state = _pair_state(search, pair.prompt)
            if state is None:
                continue
            key = (state_key(state), chosen, rejected)
            out.setdefault(key, Preference(state, chosen, rejected, pair.source, pair.run_id, pair.task))
    return _in_content_order(out)


def detours(store: Store | str | Path, *, tags: Sequence[str] = (), tasks: Iterable[str] | None = None,
            situation: str = "observation") -> list[Decision]:
    """Decisions that led straight back to where they started, from every finished run (see `run_detours`):
    negatives for unlikelihood training (Welleck et al. 2019), plentiful in failed runs that loop."""
    seen: dict[tuple[str, str], Decision] = {}
    with snapshot(store) as db:
        for run in _runs(db, tags, tasks):
            for state, action in run_detours(run, db.steps(run.id), situation):
                seen.setdefault((state_key(state), action), Decision(state, action, run.id, run.task))
    return _in_content_order(seen)


def mc_preferences(store: Store | str | Path, *, margin: float = 0.1, tags: Sequence[str] = (),
                   tasks: Iterable[str] | None = None) -> list[Preference]:
    """Pairs (better action, worse action) at states left by several actions, from mean final outcomes.

    A pair needs the two means to differ by at least `margin`."""
    values: dict[str, tuple[dict[str, Any], str, str | None, dict[str, list[float]]]] = {}
    with snapshot(store) as db:
        for run in _runs(db, tags, tasks):
            steps = db.steps(run.id)
            outcome = effective_outcome(run, steps)
            if outcome is None:
                continue
            for state, action in run_decisions(run, steps):
                key = state_key(state)
                entry = values.setdefault(key, (state, run.id, run.task, {}))
                entry[3].setdefault(action, []).append(outcome)
    out = []
    for state, run_id, task, by_action in values.values():
        if len(by_action) < 2:
            continue
        means = sorted(((sum(v) / len(v), a) for a, v in by_action.items()), reverse=True)
        best_value, best = means[0]
        for value, action in means[1:]:
            if best_value - value >= margin:
                out.append(Preference(state, best, action, "mc", run_id, task))
    return sorted(out, key=lambda p: (str(p.task), state_key(p.state), p.chosen, p.rejected))


def coverage(store: Store | str | Path, *, tags: Sequence[str] = (), tasks: Iterable[str] | None = None,
             success_threshold: float = 1.0, situation: str = "observation") -> dict[str, Any]:
    """What the stored trajectories cover: distinct tasks, situations and actions, overall and on
    successful runs, and actions by verb (the first word: the kind of subgoal in a text game)."""
    from collections import Counter

    runs = succeeded = 0
    task_ids: set[str | None] = set()
    won: set[str | None] = set()
    states: set[str] = set()
    actions: set[str] = set()
    verbs: Counter[str] = Counter()
    with snapshot(store) as db:
        for run in _runs(db, tags, tasks):
            steps = db.steps(run.id)
            pairs = run_decisions(run, steps)
            if not pairs:
                continue
            runs += 1
            task_ids.add(run.task)
            outcome = effective_outcome(run, steps)
            if outcome is not None and outcome >= success_threshold:
                succeeded += 1
                won.add(run.task)
            for state, action in pairs:
                states.add(_situation(state, situation))
                if action not in actions:
                    verbs[action.split(" ", 1)[0]] += 1
                actions.add(action)
    return {"runs": runs, "successful_runs": succeeded, "tasks": len(task_ids), "tasks_solved": len(won),
            "situations": len(states), "actions": len(actions), "actions_by_verb": dict(verbs.most_common())}


def _in_content_order(items: dict[Any, Any]) -> list[Any]:
    """Values ordered by task and content, not by when their runs were stored: a search's rollouts
    share one start time and random ids, and training must see the same data in the same order every time."""
    return [items[k] for k in sorted(items, key=lambda k: (str(items[k].task), k))]


def _side(side: Any) -> str | None:
    side = to_jsonable(side)  # the JSON view: text a tokenizer can take (trajgraph.store.text)
    if isinstance(side, dict):
        text = _action_text(side.get("action"))
        if text is not None:
            return text
        return str(side["text"]) if side.get("text") else None
    return render_action(side) if side is not None else None


def _pair_state(search: Run, prompt: Any) -> dict[str, Any] | None:
    """The decision point of a pair: the search's input, moved on by the pair's history."""
    start, prompt = to_jsonable(search.input), to_jsonable(prompt)
    if not isinstance(start, dict) or not isinstance(prompt, dict):
        return None
    history = [{"action": str(a), "observation": str(o or "")} for a, o in prompt.get("history") or []]
    state = _policy_view(start)
    state["history"] = history
    if history:
        state["observation"] = history[-1]["observation"]
        state.pop("actions", None)  # the start's choices; the pair names the two that matter
    return state


__all__ = ["Decision", "Preference", "NoTrainingDataError", "decisions", "detours", "preferences", "mc_preferences", "run_detours", "coverage", "run_decisions", "state_key"]
