"""TextWorld games as env-loop tasks, generated offline by seed and forked by the engine's own save/restore.

Games (adapters/_textworld_games.py). `make_game(seed, challenge, settings)` runs
TextWorld's generator (the Python API behind `tw-make`) and caches the compiled
game (.z8 + .json) under $TRAJGRAPH_TEXTWORLD_CACHE or ~/.cache/trajgraph/textworld;
the same seed and settings give the same game, byte for byte. Challenges: "tw-simple" (dense
rewards, default), "tw-cooking", "tw-coin_collector", "tw-treasure_hunter" and
"custom" (world_size, nb_objects, quest_length; one point at the end).

Forking. TextWorld >= 1.7 plays .z8 games on Jericho's Frotz, whose
`get_state()/set_state()` copy the Z-machine's RAM, stack and RNG (~10 µs). That
alone restores the game text and score, but TextWorld also tracks the world's
logical state in Python (GameProgression: admissible commands, the winning
policy), so a snapshot holds that too. Its own `copy()` rebuilds every quest's
dependency tree from scratch (1.6 ms); `_copy_progression` copies only the parts a
step mutates (~50 µs), and only when the game moves on after a snapshot or restore
(copy-on-write), so a snapshot or a restore costs about as much as the engine's.
`fork="replay"` instead resets and re-executes the action prefix (what RRO and IPR
do on WebShop); it is used when the wrapper stack is not the one we know.

The env lives outside the graph: one `TextWorldEnv` per graph, not thread-safe. A
search restores it to a decision point's snapshot before branching from there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from trajgraph.adapters._textworld_games import (  # noqa: F401 (CACHE_ENV is re-exported)
    CACHE_ENV,
    CHALLENGE_DEFAULTS,
    GameJobs,
    cache_dir,
    game_id,
    load_textworld,
    make_game,
    start_games,
)
from trajgraph.envloop import EnvState, env_loop
from trajgraph.envloop.task import TaskSpec, seed_pool
from trajgraph.errors import ConfigError, ForkError

# -- the environment ------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """What the agent sees after a reset or a step."""

    observation: str
    admissible_commands: tuple[str, ...]
    score: int
    max_score: int
    won: bool
    lost: bool
    policy_commands: tuple[str, ...]
    objective: str

    @property
    def done(self) -> bool:
        return self.won or self.lost


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A saved game position: engine state + TextWorld's Python-side tracking + the current frame."""

    gamefile: str
    frame: Frame
    prefix: tuple[str, ...]  # commands since reset (used by fork="replay")
    engine: Any = None
    tracking: tuple = ()
    inform7: tuple = ()
    wrapper_states: tuple = field(default=())  # (layer index, GameState) for each wrapper that holds one


_BANNER = re.compile(r"^[\s_|\\/$<>-]*$")


def _clean(text: str, objective: str = "") -> str:
    """Drop the ASCII-art banner, the objective (it is the task) and runs of blank lines."""
    lines = [ln for ln in text.splitlines() if not (_BANNER.match(ln) and ln.strip())]
    out = "\n".join(lines)
    if objective:
        out = out.replace(objective, "")
    return re.sub(r"\n{3,}", "\n\n", out).strip()


def _copy_progression(gp: Any) -> Any:
    """A GameProgression copy that shares what a step never mutates (finished quests, events' definitions).

    textworld's own `copy()` rebuilds each quest's dependency trees and discards them (1.6 ms).
    """
    from textworld.generator.game import EventProgression, GameProgression, QuestProgression

    def event(e: Any) -> Any:
        n = EventProgression.__new__(EventProgression)
        n.__dict__.update(e.__dict__)
        n._tree = e._tree.copy()
        return n

    def quest(q: Any) -> Any:
        if q.done:  # update() returns at once on a finished quest: share it
            return q
        n = QuestProgression.__new__(QuestProgression)
        n.__dict__.update(q.__dict__)
        n.win_events = [event(e) for e in q.win_events]
        n.fail_events = [event(e) for e in q.fail_events]
        return n

    new = GameProgression.__new__(GameProgression)
    new.__dict__.update(gp.__dict__)
    new.state = gp.state.copy()
    new.quest_progressions = [quest(q) for q in gp.quest_progressions]
    return new


class TextWorldEnv:
    """A TextWorld game with `reset/step` returning Frames and `snapshot/restore` for search."""

    _TRACKED = ("_game_progression", "_last_action", "_previous_winning_policy", "_current_winning_policy", "_moves")

    def __init__(self, gamefile: str | os.PathLike, fork: str = "engine", policy_commands: bool = True) -> None:
        tw = load_textworld()
        from textworld.envs.wrappers.tw_inform7 import Inform7Data, StateTracking
        from textworld.envs.zmachine.jericho import JerichoEnv

        if fork not in ("engine", "replay"):
            raise ConfigError(f"fork={fork!r}: use 'engine' or 'replay'")
        self.gamefile = str(gamefile)
        infos = tw.EnvInfos(admissible_commands=True, score=True, max_score=True, won=True, lost=True,
                            objective=True, policy_commands=policy_commands)
        self._env = tw.start(self.gamefile, request_infos=infos)
        layers, e = [], self._env
        while e is not None:
            layers.append(e)
            e = e.__dict__.get("_wrapped_env")
        self._layers = layers  # every wrapper keeps its own reference to the current GameState
        self._tracking = next((x for x in layers if isinstance(x, StateTracking)), None)
        self._inform7 = next((x for x in layers if isinstance(x, Inform7Data)), None)
        self._jericho = next((x for x in layers if isinstance(x, JerichoEnv)), None)
        if fork == "engine" and None in (self._tracking, self._inform7, self._jericho):
            fork = "replay"  # an unknown wrapper stack: re-execution is always correct
        self.fork = fork
        self._shared = False  # is the GameProgression also held by a snapshot? (copy-on-write)
        self._prefix: tuple[str, ...] = ()
        self.frame: Frame | None = None
        self.walkthrough: tuple[str, ...] = ()

    def _frame(self, state: Any, first: bool = False) -> Frame:
        objective = state.get("objective") or ""
        return Frame(
            observation=_clean(state.get("feedback") or "", objective if first else ""),
            admissible_commands=tuple(state.get("admissible_commands") or ()),
            score=int(state.get("score") or 0),
            max_score=int(state.get("max_score") or 0),
            won=bool(state.get("won")),
            lost=bool(state.get("lost")),
            policy_commands=tuple(state.get("policy_commands") or ()),
            objective=objective,
        )

    def _engine_layers(self) -> tuple[Any, Any, Any]:
        """StateTracking, Inform7Data and JerichoEnv: what engine forking reads and writes (all found when fork='engine')."""
        t, i7, jericho = self._tracking, self._inform7, self._jericho
        assert t is not None and i7 is not None and jericho is not None, "engine forking on a wrapper stack without them"
        return t, i7, jericho

    def reset(self) -> Frame:
        state = self._env.reset()
        self._shared, self._prefix = False, ()
        self.walkthrough = tuple(state.get("extra.walkthrough") or state.get("policy_commands") or ())
        self.frame = self._frame(state, first=True)
        return self.frame

    def step(self, command: str) -> Frame:
        if self.frame is None:
            raise ForkError(f"{self.gamefile}: call reset() before step()")
        if self._shared:
            t = self._engine_layers()[0]
            t._game_progression = _copy_progression(t._game_progression)
            self._shared = False
        state, _, _ = self._env.step(command)
        self._prefix += (command,)
        self.frame = self._frame(state)
        return self.frame

    def snapshot(self) -> Snapshot:
        if self.frame is None:
            raise ForkError(f"{self.gamefile}: call reset() before snapshot()")
        if self.fork == "replay":
            return Snapshot(self.gamefile, self.frame, self._prefix)
        self._shared = True
        t, i7, jericho = self._engine_layers()
        return Snapshot(
            self.gamefile, self.frame, self._prefix,
            engine=jericho._jericho.get_state(),
            tracking=tuple(getattr(t, k) for k in self._TRACKED),
            inform7=(i7._prev_state, list(i7._tracked_infos)),
            wrapper_states=tuple((i, x.__dict__["state"]) for i, x in enumerate(self._layers) if "state" in x.__dict__),
        )

    def restore(self, snap: Snapshot) -> None:
        """Put the game back where `snap` was taken (by this env or another env of the same game file)."""
        if snap.gamefile != self.gamefile:
            raise ForkError(f"snapshot of {snap.gamefile} cannot be restored into {self.gamefile}")
        if self.frame is None:
            self.reset()  # a fresh env: start the interpreter and the tracker first
        if self.fork == "replay" or snap.engine is None:
            self.reset()
            for command in snap.prefix:
                self.step(command)
            return
        t, i7, jericho = self._engine_layers()
        jericho._jericho.set_state(snap.engine)
        for k, v in zip(self._TRACKED, snap.tracking):
            setattr(t, k, v)
        i7._prev_state, tracked = snap.inform7
        i7._tracked_infos = list(tracked)
        for i, st in snap.wrapper_states:
            self._layers[i].__dict__["state"] = st
        self._shared = True
        self._prefix, self.frame = snap.prefix, snap.frame

    def close(self) -> None:
        self._env.close()


# -- the graph and the tasks -------------------------------------------------------------


class TextWorldState(EnvState, total=False):
    """EnvState plus what TextWorld tells about the game (the oracle reads policy_commands)."""

    max_score: int
    won: bool
    policy_commands: list[str]


def outcome_of(frame: Frame) -> float:
    """score / max_score; 1.0 when the game is won."""
    if frame.won:
        return 1.0
    return min(1.0, frame.score / frame.max_score) if frame.max_score else 0.0


@dataclass(frozen=True)
class TextWorldGraph:
    """`make_graph` of a TextWorld task: policy node -> (compiled graph, TextWorldEnv).

    Graph: START -> reset -> policy -> env -> (policy | END). The reset node restarts
    the game, so every run (and a search's root) begins at the task's first state.
    """

    gamefile: str
    max_steps: int
    name: str
    fork: str = "engine"
    exclude: tuple[str, ...] = ()  # command prefixes to hide from the admissible list, e.g. ("examine",)
    policy_commands: bool = True  # track TextWorld's winning policy (the oracle's fallback; ~1.4 ms a step)

    def state_of(self, frame: Frame, done: bool) -> dict[str, Any]:
        actions = [] if done else [c for c in frame.admissible_commands if not (self.exclude and c.startswith(self.exclude))]
        return {"observation": frame.observation, "actions": actions, "score": float(frame.score),
                "max_score": frame.max_score, "won": frame.won, "policy_commands": list(frame.policy_commands),
                "done": done, "reward": outcome_of(frame) if done else None}

    def __call__(self, policy_node: Any) -> tuple[Any, TextWorldEnv]:
        env = TextWorldEnv(self.gamefile, fork=self.fork, policy_commands=self.policy_commands)

        def reset(state: dict[str, Any]) -> dict[str, Any]:
            frame = env.reset()
            return {"task": frame.objective, "action": None, **self.state_of(frame, frame.done)}

        def step(state: dict[str, Any]) -> dict[str, Any]:
            action = str(state.get("action") or "")
            frame = env.step(action)
            done = frame.done or len(state.get("history") or []) + 1 >= self.max_steps
            out = self.state_of(frame, done)
            gained = float(frame.score) - float(state.get("score") or 0.0)
            out["history"] = [{"action": action, "observation": frame.observation, "reward": gained, "score": float(frame.score)}]
            return out

        graph = env_loop(step, policy_node, reset_node=reset, state_schema=TextWorldState, name=self.name)
        return graph, env


def _outcome(state: dict) -> float | None:
    return state.get("reward") if state.get("done") else None


def _oracle(walkthrough: tuple[str, ...]) -> Any:
    def oracle(state: dict) -> str:
        """The walkthrough's next command while on its path, else TextWorld's current winning policy."""
        done = [h.get("action") for h in state.get("history") or []]
        if len(done) < len(walkthrough) and tuple(done) == walkthrough[: len(done)]:
            return walkthrough[len(done)]
        policy = state.get("policy_commands") or []
        if policy:
            return policy[0]
        actions = state.get("actions") or []
        return actions[0] if actions else "look"

    return oracle


def textworld_task(seed: int = 1, challenge: str = "tw-simple", settings: dict[str, Any] | None = None,
                   cache: str | os.PathLike | None = None, max_steps: int | None = None, fork: str = "engine",
                   exclude: tuple[str, ...] = (), policy_commands: bool = True) -> TaskSpec:
    """A TextWorld game as a task (generated and cached on first use; ~1-3 s, then ~0.2 s)."""
    gamefile = make_game(seed, challenge, settings, cache)
    env = TextWorldEnv(gamefile, fork="replay")
    try:
        frame = env.reset()
        walkthrough = env.walkthrough
    finally:
        env.close()
    steps = max_steps or 2 * len(walkthrough) + 10
    factory = TextWorldGraph(str(gamefile), steps, game_id(seed, challenge, settings), fork, tuple(exclude), policy_commands)
    return TaskSpec(
        id=factory.name,
        input={"task": frame.objective, "action": None, "history": [], **factory.state_of(frame, False)},
        decision_node="policy",
        make_graph=factory,
        outcome=_outcome,
        max_steps=steps,
        optimum=1.0 if walkthrough else None,
        oracle=_oracle(walkthrough),
    )


@dataclass(frozen=True)
class TextWorldSuite:
    """Generated games; test seeds [0, 1e6), train seeds [1e6, 2e6).

    tw-simple draws test games from its test distribution (unseen food names) and
    tw-cooking from its "test" split, unless `settings` says otherwise.
    """

    challenge: str = "tw-simple"
    settings: dict[str, Any] | None = None
    cache: str | None = None
    max_steps: int | None = None
    fork: str = "engine"
    exclude: tuple[str, ...] = ()
    policy_commands: bool = True
    name: str = "textworld"

    def tasks(self, split: str = "test", n: int = 10, seed: int = 0) -> list[TaskSpec]:
        settings = self._split_settings(split)
        return [textworld_task(s, self.challenge, settings, self.cache, self.max_steps, self.fork, self.exclude,
                               self.policy_commands) for s in seed_pool(split, n, seed)]

    def prefetch(self, split: str, n: int, seed: int = 0, workers: int | None = None, *, background: bool = False) -> GameJobs:
        """Generate the games `tasks(split, n, seed)` will play, in parallel processes (one per core by
        default), so that `tasks` only loads them (~0.2 s each instead of ~1-3 s). Waits for them, or with
        `background=True` returns at once (the processes run at a lower priority: they take what the
        caller's work leaves of the cores); `.missing` says how many were made, `.wait()` waits."""
        jobs = start_games(seed_pool(split, n, seed), self.challenge, self._split_settings(split), self.cache, workers,
                           nice=10 if background else 0)
        if not background:
            jobs.wait()
        return jobs

    def _split_settings(self, split: str) -> dict[str, Any]:
        settings = dict(self.settings or {})
        if self.challenge == "tw-simple":
            settings.setdefault("test", split == "test")
        elif self.challenge == "tw-cooking":
            settings.setdefault("split", split)
        return settings


__all__ = ["TextWorldEnv", "Frame", "Snapshot", "TextWorldGraph", "TextWorldState", "TextWorldSuite", "make_game",
           "start_games", "GameJobs",
           "game_id", "textworld_task", "outcome_of", "cache_dir", "CHALLENGE_DEFAULTS"]
