"""A tiny synthetic command-choice task: one decision, one clearly right command.

Each state reads like a text-adventure step (objective, observation, 6-9 admissible
commands); exactly one command does what the objective asks, the others are
plausible distractors that reuse its words. It measures whether a policy reads the
objective at all (random picks right 1/len(actions) of the time) and gives tests
many varied states without a game engine.
"""

from __future__ import annotations

import random
from typing import Any

_ROOMS = ["kitchen", "cellar", "garden", "library", "attic", "bedroom", "pantry", "workshop", "hallway", "study"]
_DIRS = ["north", "south", "east", "west"]
_THINGS = ["key", "lamp", "book", "apple", "coin", "knife", "map", "rope", "candle", "shovel"]
_ADJ = ["red", "old", "small", "rusty", "golden", "wooden", "blue", "heavy"]
_FOOD = ["apple", "carrot", "sandwich", "banana", "pie", "mushroom"]
_CONTAINERS = ["chest", "fridge", "cupboard", "box", "drawer", "cabinet"]
_FURNITURE = ["table", "shelf", "counter", "desk", "bench"]


def _take(r: random.Random) -> tuple[str, str, str, list[str]]:
    (a1, a2), (t1, t2), f, room = r.sample(_ADJ, 2), r.sample(_THINGS, 2), r.choice(_FURNITURE), r.choice(_ROOMS)
    d1, d2 = r.sample(_DIRS, 2)
    obs = f"You are in the {room}. On the {f} you see a {a1} {t1} and a {a2} {t2}. Exits lead {d1} and {d2}."
    right = f"take {a1} {t1} from {f}"
    return f"Take the {a1} {t1} from the {f}.", obs, right, [f"take {a2} {t2} from {f}", f"examine {f}", f"go {d1}", f"go {d2}", f"examine {a1} {t1}"]


def _go(r: random.Random) -> tuple[str, str, str, list[str]]:
    here, there, other = r.sample(_ROOMS, 3)
    d1, d2, d3 = r.sample(_DIRS, 3)
    obs = f"You are in the {here}. A doorway to the {d1} leads to the {there}; to the {d2} is the {other}. A passage leads {d3}."
    return f"Go to the {there}.", obs, f"go {d1}", [f"go {d2}", f"go {d3}", f"examine {there}", "look", "inventory"]


def _open(r: random.Random) -> tuple[str, str, str, list[str]]:
    c1, c2 = r.sample(_CONTAINERS, 2)
    thing, room = r.choice(_THINGS), r.choice(_ROOMS)
    obs = f"You are in the {room}. There is a closed {c1} and a closed {c2} here."
    return f"Open the {c1} and find the {thing}.", obs, f"open {c1}", [f"open {c2}", f"examine {c1}", f"examine {c2}", "look", f"take {thing}"]


def _eat(r: random.Random) -> tuple[str, str, str, list[str]]:
    f1, f2 = r.sample(_FOOD, 2)
    obs = f"You are carrying a {f1} and a {f2}. You feel hungry."
    return f"Eat the {f1}.", obs, f"eat {f1}", [f"eat {f2}", f"drop {f1}", f"drop {f2}", f"examine {f1}", "inventory"]


def _unlock(r: random.Random) -> tuple[str, str, str, list[str]]:
    (a1, a2), (c1, c2) = r.sample(_ADJ, 2), r.sample(_CONTAINERS, 2)
    obs = f"You hold a {a1} key and a {a2} key. In front of you are a locked {c1} and a locked {c2}."
    right = f"unlock {c1} with {a1} key"
    return f"Unlock the {c1} with the {a1} key.", obs, right, [f"unlock {c2} with {a1} key", f"unlock {c1} with {a2} key", f"drop {a1} key", f"examine {c1}", "look"]


_KINDS = [_take, _go, _open, _eat, _unlock]


def choice_states(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n env-loop states; each has `task` (the objective), `observation`, shuffled
    `actions`, empty `history`, and `right`: the one command that does what was asked."""
    r = random.Random(seed)
    states = []
    for i in range(n):
        goal, obs, right, others = _KINDS[i % len(_KINDS)](r)
        actions = list(dict.fromkeys([right, *others, *r.sample(["look", "inventory", "wait"], r.randint(0, 2))]))
        r.shuffle(actions)
        states.append({"task": goal, "observation": obs, "actions": actions, "history": [], "right": right})
    return states
