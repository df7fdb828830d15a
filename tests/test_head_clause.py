"""The head's "clause" features: each command also reads what the observation says about it.

A whole-observation embedding blurs "right: a hole" into the rest of the text; the
clause features hand the head that clause per command, so a head can learn "avoid
the direction whose clause names a hole" and carry it to layouts it never saw.
"""

from __future__ import annotations

import random
from pathlib import Path

from trajgraph.learn.data import Decision
from trajgraph.learn.head_fit import FitConfig, fit
from trajgraph.policies.head import command_clause, load_trainable_policy, trainable_policy

DIRS = ("left", "down", "right", "up")
WORDS = ("a hole", "frozen ice")


def _state(safe: str, rng: random.Random) -> dict:
    around = "; ".join(f"{d}: {'frozen ice' if d == safe else 'a hole'}" for d in DIRS)
    row, col = rng.randrange(4), rng.randrange(4)
    return {"task": "Walk across the lake without falling into a hole.", "observation": f"You are at row {row}, col {col}. Around you, {around}.",
            "actions": list(DIRS), "history": []}


def test_command_clause_picks_the_clause_about_the_command() -> None:
    obs = "You go right. You are at row 0, col 1. Around you, left: the start; down: frozen ice; right: a hole; up: the edge of the lake."
    assert command_clause(obs, "right") == "right: a hole"  # the last of equally matching clauses (not "You go right")
    assert command_clause(obs, "down") == "down: frozen ice"
    assert command_clause("You see a red chest and a blue box.", "open blue box") == "You see a red chest and a blue box"
    assert command_clause("Nothing happens.", "north") == ""
    assert command_clause("anything", "") == ""


def test_a_clause_head_learns_the_safe_direction_on_unseen_states(tmp_path: Path) -> None:
    rng = random.Random(0)
    train = [Decision(state=_state(safe, rng), action=safe, run_id="r", task=f"t{i}") for i in range(3) for safe in DIRS]
    policy = trainable_policy(temperature=0.0, features="clause")
    assert policy.untrained()
    fit(policy, train, [], FitConfig(epochs=60, min_steps=200, val_fraction=0.0))
    test = [_state(safe, random.Random(100 + i)) for i, safe in enumerate(DIRS * 2)]
    picked = [policy(s)["action"] for s in test]
    assert picked == list(DIRS * 2)
    policy.save(tmp_path / "p")
    again = load_trainable_policy(tmp_path / "p", temperature=0.0)
    assert again.card["features"] == "clause" and again.scores(test[0]) == policy.scores(test[0])
