"""The head's "progress" features: where in the objective's instructions the agent is.

TextWorld objectives open with a greeting no command answers and repeat
instructions ("go east" twice); matching each played action against every
sentence (features "full"/"clause") left the greeting open, so the head's "next
instruction" was the greeting all game and after "take carrot" it could not see
"travel north" coming. `progress_pointer` walks the instructions in order.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trajgraph.learn.data import Decision
from trajgraph.learn.head_fit import FitConfig, fit
from trajgraph.policies.head import load_trainable_policy, n_scalars, progress_pointer, trainable_policy

OBJECTIVE = ("Hey, thanks for coming over to the TextWorld today, there is something I need you to do for me. "
             "First, open the antique trunk. Then, take the old key from the antique trunk. After that, go east. "
             "Then, open the screen door. Then, go east. Having taken the carrot, attempt to travel north.")


def _state(done: list[str], actions: list[str]) -> dict:
    return {"task": OBJECTIVE, "observation": "You are in a room.", "actions": actions,
            "history": [{"action": a, "observation": "ok"} for a in done]}


def test_the_pointer_walks_the_instructions_in_order() -> None:
    # rows: played actions; columns: instructions (0 is a greeting nothing answers)
    sim = torch.tensor([[0.1, 0.9, 0.6, 0.2, 0.2],   # answers 1
                        [0.1, 0.2, 0.3, 0.8, 0.8],   # 3 and 4 tie: the nearer one, in order
                        [0.1, 0.2, 0.2, 0.2, 0.3],   # off-script ("look"): no move
                        [0.1, 0.2, 0.2, 0.9, 0.7]])  # matches 3 best, but 3 is behind: 4
    assert progress_pointer(sim[:0], 0.5) == -1
    assert progress_pointer(sim[:1], 0.5) == 1
    assert progress_pointer(sim[:2], 0.5) == 3
    assert progress_pointer(sim[:3], 0.5) == 3
    assert progress_pointer(sim, 0.5) == 4


def test_progress_features_name_the_next_instruction_after_a_repeated_one() -> None:
    done = ["open antique trunk", "take old key from antique trunk", "go east", "open screen door"]
    actions = ["go east", "go west", "close screen door"]
    progress = trainable_policy(temperature=0.0, features="progress").parts(_state(done, actions), actions)
    assert progress.context[0] == "Then, go east."  # the second "go east", not the first (already done)
    assert len(progress.scalars[0]) == n_scalars("progress") == 10
    clause = trainable_policy(temperature=0.0, features="clause").parts(_state(done, actions), actions)
    assert clause.context[0].startswith("Hey, thanks")  # what the other features see: the greeting, never closed
    later = trainable_policy(temperature=0.0, features="progress").parts(_state(done + ["go east"], ["go north", "eat carrot"]),
                                                                         ["go north", "eat carrot"])
    assert later.context[0] == "Having taken the carrot, attempt to travel north."
    part = dict(zip(later.commands, (s[-1] for s in later.scalars)))  # its clause of the next instruction
    assert part["go north"] > part["eat carrot"]


def test_a_progress_head_fits_saves_and_loads(tmp_path: Path) -> None:
    actions = ["go east", "go west", "close screen door"]
    done = ["open antique trunk", "take old key from antique trunk", "go east", "open screen door"]
    train = [Decision(state=_state(done[:i], actions), action="go east" if i in (2, 4) else actions[2], run_id="r", task=f"t{i}")
             for i in range(5)]
    for features in ("progress", "progress-scalars"):
        policy = trainable_policy(temperature=0.0, features=features)
        report = fit(policy, train, [], FitConfig(epochs=5, min_steps=10, val_fraction=0.0))
        assert report.decisions == 5 and not policy.untrained()
        policy.save(tmp_path / features)
        again = load_trainable_policy(tmp_path / features, temperature=0.0)
        assert again.card["features"] == features and again.scores(train[0].state) == policy.scores(train[0].state)
