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
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trajgraph.envloop.statemap import StateMap
from trajgraph.errors import ConfigError
from trajgraph.export.read import effective_outcome, snapshot
from trajgraph.render import render_action
from trajgraph.store import Store
from trajgraph.store.json import to_jsonable
from trajgraph.trajectory import Run, Step

_STATE_KEYS = ("task", "objective", "observation", "actions", "history")


class NoTrainingDataError(ConfigError):
    """The store holds nothing a policy can learn from (no successful runs, no pairs)."""


class UnreadDecisionsError(ConfigError):
    """Some decision steps of a run could not be rebuilt into a decision state (see `decisions`)."""


class UnreadDecisionsWarning(UserWarning):
    """Some decision steps of a run could not be rebuilt into a decision state (see `decisions`)."""


@dataclass
class ReadReport:
    """How many decision steps each run had and how many decisions were read from them."""

    runs: int = 0
    decision_steps: int = 0
    read: int = 0
    short: list[tuple[str, int, int, str]] = field(default_factory=list)  # (run id, read, steps, why the first was unread)

    def add(self, run_id: str, read: int, steps: int, why: str) -> None:
        self.runs += 1
        self.decision_steps += steps
        self.read += read
        if read < steps:
            self.short.append((run_id, read, steps, why))

    def line(self) -> str:
        run_id, read, steps, why = self.short[0]
        more = f" (and {len(self.short) - 1} more run(s))" if len(self.short) > 1 else ""
        return (f"read {self.read} decisions of {self.decision_steps} decision steps: run {run_id} gave {read} of {steps}{more}; "
                f"{why}")

    def as_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "decision_steps": self.decision_steps, "decisions_read": self.read,
                "runs_short": len(self.short), "first_short": list(self.short[0]) if self.short else None}

    def check(self, on_unread: str) -> None:
        """on_unread: "error" raises, "warn" warns (one line), "ignore" does nothing."""
        if not self.short or on_unread == "ignore":
            return
        if on_unread == "error":
            raise UnreadDecisionsError(self.line() + " (on_unread='warn' trains on what was read)")
        warnings.warn(self.line(), UnreadDecisionsWarning, stacklevel=3)


@dataclass(frozen=True)
class Decision:
    """One decision on a successful trajectory: the state, the admissible actions, the one taken."""

    state: dict[str, Any]  # task, observation, actions, history ({"action", "observation"} turns)
    action: str
    run_id: str
    task: str | None
    count: int = 1  # how many stored trajectories took this action from this state
    raw: dict[str, Any] | None = None  # the state as the user's graph held it (its own keys), when rebuilt


@dataclass(frozen=True)
class Preference:
    """At `state`, `chosen` was preferred to `rejected` by a search (`source`: rro, mcts, best_of_n)."""

    state: dict[str, Any]
    chosen: str
    rejected: str
    source: str
    run_id: str
    task: str | None
    raw: dict[str, Any] | None = None  # the decision state as the user's graph held it, when stored


def state_key(state: Mapping[str, Any]) -> str:
    """A content key of what a policy decides from (objective, past actions, observation, choices)."""
    history = [str(h.get("action")) for h in state.get("history") or [] if isinstance(h, Mapping)]
    text = json.dumps([state.get("task") or state.get("objective"), history, str(state.get("observation") or ""),
                       list(state.get("actions") or [])], default=str)
    return hashlib.sha1(text.encode()).hexdigest()


def _action_text(action: Any, state_map: StateMap | None = None) -> str | None:
    return (state_map or StateMap()).action_of(to_jsonable(action))


def _policy_view(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: state[k] for k in _STATE_KEYS if k in state}
    out["history"] = [{"action": h.get("action"), "observation": h.get("observation", "")}
                      for h in state.get("history") or [] if isinstance(h, Mapping)]
    return out


SITUATIONS = ("observation", "commands")


def run_decisions(run: Run, steps: Sequence[Step], *, trim_loops: bool = False,
                  situation: str = "observation", state_map: StateMap | None = None) -> list[tuple[dict[str, Any], str]]:
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
    return _walk(run, steps, trim_loops, situation, state_map or StateMap()).pairs


def run_detours(run: Run, steps: Sequence[Step], situation: str = "observation",
                state_map: StateMap | None = None) -> list[tuple[dict[str, Any], str]]:
    """The first decision of every stretch that led back to a situation seen before: an action
    that made no progress at all (in a deterministic environment, a wasted step, whatever the outcome)."""
    return _walk(run, steps, True, situation, state_map or StateMap()).loops


@dataclass
class _Walk:
    pairs: list[tuple[dict[str, Any], str]]
    loops: list[tuple[dict[str, Any], str]]
    raws: dict[int, dict[str, Any]]  # id(view) -> the raw state it was read from
    steps: int  # decision steps whose update names an action
    read: int  # decisions read from them (before trimming loops)
    why: str  # why the first unread one was not read


def _walk(run: Run, steps: Sequence[Step], trim: bool, situation: str, state_map: StateMap) -> _Walk:
    """Replay a run's node updates over its input; at each decision step, the state the node saw.

    A decision step whose state lacks the admissible actions is counted as unread, not
    dropped silently; a mis-shaped key is a ConfigError (`StateMap.view`)."""
    data = to_jsonable(run.input)
    state: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
    out: list[tuple[dict[str, Any], str]] = []
    loops: list[tuple[dict[str, Any], str]] = []
    raws: dict[int, dict[str, Any]] = {}
    if situation not in SITUATIONS:
        raise ConfigError(f"situation must be one of {', '.join(SITUATIONS)}, got {situation!r}")
    n_steps = n_read = 0
    why = ""
    seen = {_situation(_soft_view(state, state_map), situation): 0}
    for step in steps:
        if step.action is not None:
            action = _action_text(step.action, state_map)
            update = to_jsonable(step.action)
            if action is None and isinstance(update, dict) and "messages" not in update:  # a chat agent's step is not an env-loop decision
                n_steps += 1
                why = why or (f"its decision update has no {state_map.action!r} (keys: {sorted(map(str, update))[:12]}); "
                              "pass StateMap(action=...) naming the key your decision node writes")
            if action is not None:
                n_steps += 1
                if state.get(state_map.actions) is None:
                    why = why or (f"its decision state had no {state_map.actions!r} (keys: {sorted(map(str, state))[:12]}); store the "
                                  "steps before the first decision (a reset node's) or pass StateMap(...) naming your keys")
                else:
                    try:
                        view = state_map.view(state)
                    except ConfigError as exc:
                        raise ConfigError(f"run {run.id}, step {step.seq}: {exc}") from None
                    raws[id(view)] = dict(state)
                    out.append((view, action))
                    n_read += 1
        try:
            state_map.apply(state, to_jsonable(step.update))
        except ConfigError as exc:
            raise ConfigError(f"run {run.id}, step {step.seq} ({step.node}): {exc}") from None
        if trim and step.action is None:
            here = _situation(_soft_view(state, state_map), situation)
            if here in seen:
                if seen[here] < len(out):
                    loops.append(out[seen[here]])
                del out[seen[here]:]  # back where we were: the decisions since were a detour
            seen = {k: v for k, v in seen.items() if v <= len(out)}
            seen.setdefault(here, len(out))
    return _Walk(out, loops, raws, n_steps, n_read, why)


def _soft_view(state: Mapping[str, Any], state_map: StateMap) -> dict[str, Any]:
    """The situation keys of a state under the map, without checks (for loop detection between decisions)."""
    return {"observation": state.get(state_map.observation), "actions": state.get(state_map.actions), "score": state.get("score")}


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
              tasks: Iterable[str] | None = None, trim_loops: bool = True, situation: str = "observation",
              state_map: StateMap | Mapping[str, Any] | None = None, on_unread: str = "warn",
              report: ReadReport | None = None) -> list[Decision]:
    """De-duplicated decisions of every run whose outcome reaches `success_threshold`.

    `tags`: only runs (or rollouts of searches) carrying all of them; `tasks`: only these task ids;
    `trim_loops`: leave out detours that came back to where they started (see `run_decisions`);
    `state_map`: where the user's state keeps task, observation, actions and history (`StateMap`).
    Every run's decision steps are counted against the decisions read from them (`report`);
    when some could not be read, `on_unread` says what happens: "warn" (one line), "error"
    (`UnreadDecisionsError`) or "ignore"."""
    if on_unread not in ("warn", "error", "ignore"):
        raise ConfigError(f"on_unread must be 'warn', 'error' or 'ignore', got {on_unread!r}")
    smap = StateMap.from_dict(state_map)
    report = report if report is not None else ReadReport()
    seen: dict[tuple[str, str], Decision] = {}
    with snapshot(store) as db:
        for run in _runs(db, tags, tasks):
            steps = db.steps(run.id)
            outcome = effective_outcome(run, steps)
            if outcome is None or outcome < success_threshold:
                continue
            walk = _walk(run, steps, trim_loops, situation, smap)
            if walk.steps:
                report.add(run.id, walk.read, walk.steps, walk.why)
            for state, action in walk.pairs:
                key = (state_key(state), action)
                old = seen.get(key)
                seen[key] = Decision(state, action, run.id, run.task, 1, walk.raws.get(id(state))) if old is None else \
                    Decision(old.state, old.action, old.run_id, old.task, old.count + 1, old.raw)
    report.check(on_unread)
    return _in_content_order(seen)


def preferences(store: Store | str | Path, *, sources: Sequence[str] | None = None, tags: Sequence[str] = (),
                tasks: Iterable[str] | None = None, state_map: StateMap | Mapping[str, Any] | None = None) -> list[Preference]:
    """Step-level pairs of env-loop searches, as (state, chosen, rejected); ties and same-action pairs dropped.

    The state is the one the search stored at the pair's node (its graph's own keys, read through
    `state_map`); pairs of older stores, without it, fall back to the search's input moved on by the pair's history."""
    smap = StateMap.from_dict(state_map)
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
            chosen, rejected = _side(pair.chosen, smap), _side(pair.rejected, smap)
            if chosen is None or rejected is None or chosen == rejected:
                continue
            if pair.chosen_score is not None and pair.rejected_score is not None and pair.chosen_score <= pair.rejected_score:
                continue
            raw = pair.prompt.get("state") if isinstance(pair.prompt, dict) else None
            state: dict[str, Any] | None
            if isinstance(raw, dict):
                try:
                    state = smap.view(raw)
                except ConfigError as exc:
                    raise ConfigError(f"pair of search {pair.run_id} at node {pair.node_id}: {exc}") from None
            else:
                raw, state = None, _pair_state(search, pair.prompt)
            if state is None:
                continue
            key = (state_key(state), chosen, rejected)
            out.setdefault(key, Preference(state, chosen, rejected, pair.source, pair.run_id, pair.task, raw))
    return _in_content_order(out)


def detours(store: Store | str | Path, *, tags: Sequence[str] = (), tasks: Iterable[str] | None = None,
            situation: str = "observation", state_map: StateMap | Mapping[str, Any] | None = None) -> list[Decision]:
    """Decisions that led straight back to where they started, from every finished run (see `run_detours`):
    negatives for unlikelihood training (Welleck et al. 2019), plentiful in failed runs that loop."""
    seen: dict[tuple[str, str], Decision] = {}
    with snapshot(store) as db:
        for run in _runs(db, tags, tasks):
            walk = _walk(run, db.steps(run.id), True, situation, StateMap.from_dict(state_map))
            for state, action in walk.loops:
                seen.setdefault((state_key(state), action), Decision(state, action, run.id, run.task, 1, walk.raws.get(id(state))))
    return _in_content_order(seen)


def mc_preferences(store: Store | str | Path, *, margin: float = 0.1, tags: Sequence[str] = (),
                   tasks: Iterable[str] | None = None, state_map: StateMap | Mapping[str, Any] | None = None) -> list[Preference]:
    """Pairs (better action, worse action) at states left by several actions, from mean final outcomes.

    A pair needs the two means to differ by at least `margin`."""
    values: dict[str, tuple[dict[str, Any], str, str | None, dict[str, list[float]], dict[str, Any] | None]] = {}
    smap = StateMap.from_dict(state_map)
    with snapshot(store) as db:
        for run in _runs(db, tags, tasks):
            steps = db.steps(run.id)
            outcome = effective_outcome(run, steps)
            if outcome is None:
                continue
            walk = _walk(run, steps, False, "observation", smap)
            for state, action in walk.pairs:
                key = state_key(state)
                entry = values.setdefault(key, (state, run.id, run.task, {}, walk.raws.get(id(state))))
                entry[3].setdefault(action, []).append(outcome)
    out = []
    for state, run_id, task, by_action, raw in values.values():
        if len(by_action) < 2:
            continue
        means = sorted(((sum(v) / len(v), a) for a, v in by_action.items()), reverse=True)
        best_value, best = means[0]
        for value, action in means[1:]:
            if best_value - value >= margin:
                out.append(Preference(state, best, action, "mc", run_id, task, raw))
    return sorted(out, key=lambda p: (str(p.task), state_key(p.state), p.chosen, p.rejected))


def coverage(store: Store | str | Path, *, tags: Sequence[str] = (), tasks: Iterable[str] | None = None,
             success_threshold: float = 1.0, situation: str = "observation",
             state_map: StateMap | Mapping[str, Any] | None = None) -> dict[str, Any]:
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
            pairs = run_decisions(run, steps, state_map=StateMap.from_dict(state_map))
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


def _side(side: Any, state_map: StateMap | None = None) -> str | None:
    side = to_jsonable(side)  # the JSON view: text a tokenizer can take (trajgraph.store.text)
    if isinstance(side, dict):
        text = _action_text(side.get("action"), state_map)
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


__all__ = ["Decision", "Preference", "NoTrainingDataError", "ReadReport", "UnreadDecisionsError", "UnreadDecisionsWarning", "StateMap", "decisions", "detours", "preferences", "mc_preferences", "run_detours", "coverage", "run_decisions", "state_key"]
