"""Which situation a decision state is, when the user gives no `state_key=`.

A transposition table is only as good as its key: a key that still holds how a state
was reached never sees two branches meet. The default keeps the state's content and
drops what tells the path, not the place:

- the path itself: `history`, `action`, `reflections` (`PATH_KEYS`);
- the running score (`score`, the env loop's return so far): it is compared, not
  keyed. The node that stands for a situation must dominate the one merged into it:
  reached no later and with no less score, so every continuation of the other is open
  to it with at least the same return (`dominates`). Neither standing for the other,
  both are kept;
- step counters: an integer field that has equalled its root value + slope x depth at
  every node the search made, finished ones included, and that two different
  situations at the same depth share (evidence that it counts turns, not places). The
  depth stands in for it: the table already lets the node reached soonest stand for a
  state. A node where the field is off its clock keeps it in its key;
- the environment's message: when the environment lives in the graph state (no
  `environment=`) and the state has fields of its own beyond the env loop's (task,
  observation, actions, score, done, reward), those fields are where the agent is, and
  `observation` is what it was told about its last step ("You go right." before the
  view). The observation is left out of the key until the same step (from one
  situation, by one action, to one situation) was told in two different ways: then it
  carries state the fields do not, and it is keyed from then on (the table is rebuilt).

Measured on the known-optimum suite (benchmarks/README.md): on CliffWalking the
running return and the feedback text hid every transposition, on the key maze the turn
counter did.
"""

from __future__ import annotations

from typing import Any

from trajgraph.store.json import canonical_key

PATH_KEYS = ("history", "action", "reflections")  # how a state was reached, not where it is
RUNNING = "score"  # the env loop's return so far: compared between nodes of a situation, not keyed
MESSAGE = "observation"  # what the environment said about the last step
# the env loop's own fields (EnvState) that are not the environment's state
_LOOP_FIELDS = frozenset({*PATH_KEYS, RUNNING, MESSAGE, "task", "actions", "done", "reward"})


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def dominates(a_depth: int, a_state: dict[str, Any], b_depth: int, b_state: dict[str, Any]) -> bool:
    """Whether a node at (a_depth, a_state) can stand for one of the same situation at
    (b_depth, b_state): reached no later, with no less running score."""
    if a_depth > b_depth:
        return False
    a, b = a_state.get(RUNNING), b_state.get(RUNNING)
    na, nb = _number(a), _number(b)
    return na >= nb if na is not None and nb is not None else a == b


class Situations:
    """The default state key, and the evidence it is learned from (one per search)."""

    def __init__(self, *, messages: bool) -> None:
        self.messages = messages  # may the observation be a message (the environment lives in the graph)?
        self.root: dict[str, Any] | None = None
        self.slopes: dict[str, int | None] = {}  # clock candidates: field -> value gained per decision
        self.clocks: dict[str, int] = {}  # decided step counters: field -> slope
        self.decided = False
        self.message_keyed = False  # set when the observation was seen to carry state
        self._said: dict[str, Any] = {}  # a step (from, action, to) -> what the environment said about it
        self._seen: dict[int, list[dict[str, Any]]] = {}  # unfinished states by depth, while clocks are undecided

    def key(self, state: dict[str, Any], depth: int | None = None) -> str:
        return canonical_key(self._content(state, depth, self.clocks))

    def _content(self, state: dict[str, Any], depth: int | None, clocks: dict[str, int] | None,
                 message: bool | None = None) -> dict[str, Any]:
        root = self.root or {}
        drop = set(PATH_KEYS) | {RUNNING}
        if depth is not None and clocks:
            drop |= {f for f, slope in clocks.items() if state.get(f) == root.get(f, 0) + slope * depth}
        elif clocks is None:
            drop |= set(self.slopes)
        if message if message is not None else self._message_free(state, drop):
            drop.add(MESSAGE)
        return {k: v for k, v in state.items() if k not in drop}

    def _message_free(self, state: dict[str, Any], dropped: set[str]) -> bool:
        return self.messages and not self.message_keyed and any(k not in _LOOP_FIELDS and k not in dropped for k in state)

    def observe(self, state: dict[str, Any], depth: int, action: Any, terminal: bool, came_from: str = "") -> bool:
        """Learn from a new node (before it is keyed; `came_from`: its parent's key). True:
        what was learned changes the keys already given, so the caller rebuilds its table."""
        if self.root is None:
            self.root = dict(state)
            self.slopes = {k: None for k, v in state.items() if k not in _LOOP_FIELDS and isinstance(v, int) and not isinstance(v, bool)}
            self.decided = not self.slopes
            if not terminal:
                self._seen.setdefault(0, []).append(state)
            return False
        rekey = self._check_message(state, depth, action, came_from)
        if depth > 0:
            rekey |= self._check_clocks(state, depth, terminal)
        return rekey

    def _check_clocks(self, state: dict[str, Any], depth: int, terminal: bool) -> bool:
        root = self.root or {}
        shrank = False
        for f, slope in list(self.slopes.items()):
            v = state.get(f)
            step, rest = divmod(v - root[f], depth) if isinstance(v, int) and not isinstance(v, bool) else (0, 1)
            if rest or step == 0 or (slope is not None and step != slope):
                del self.slopes[f]
                shrank = True
            else:
                self.slopes[f] = step
        if self.decided:
            return False
        if not self.slopes:
            self.decided = True
            self._seen.clear()
            return False
        if not terminal:
            self._seen.setdefault(depth, []).append(state)
        # two different situations at one depth that share the candidate: it counts turns
        depths = self._seen.items() if shrank else [(depth, self._seen.get(depth, []))]
        for _, states in depths:
            if len({canonical_key(self._content(s, None, None)) for s in states}) >= 2:
                self.decided = True
                self.clocks = {f: s for f, s in self.slopes.items() if s is not None}
                self._seen.clear()
                return bool(self.clocks)
        return False

    def _check_message(self, state: dict[str, Any], depth: int, action: Any, came_from: str) -> bool:
        if not self.messages or self.message_keyed or MESSAGE not in state or action is None:
            return False
        # a message about a step is told by the step: where from, what was done, where to
        step = canonical_key([came_from, action, self._content(state, depth, self.clocks, message=True)])
        said = self._said.setdefault(step, state[MESSAGE])
        if said != state[MESSAGE]:  # one step, two messages: the message carries state the fields do not
            self.message_keyed = True
            return True
        return False


__all__ = ["PATH_KEYS", "RUNNING", "Situations", "dominates"]
