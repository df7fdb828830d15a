"""evolve chooses on validation, never on test, and resumes after a kill.

The suite is the generated locked-boxes family (trajgraph.testing.locked_boxes):
partial credit, quick to play, so a whole loop runs in a test.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from trajgraph.errors import ConfigError
from trajgraph.learn.evolve import STATE, RoundResult, beats, evolve, split_validation
from trajgraph.testing.locked_boxes import LockedBoxesSuite

SUITE = LockedBoxesSuite(goals=2, distractors=1)
TRAIN, TEST = SUITE.tasks("train", 6), SUITE.tasks("test", 3)
OPTIONS: dict[str, Any] = dict(rounds=1, optimizer="best-of-n", budget=16, name="boxes", workers=1, val_fraction=0.34,
               train_options={"epochs": 3, "min_steps": 20}, temperatures=(0.0, 0.3))


def _row(r: int, vg: float, vs: float, tg_: float = 0.0) -> RoundResult:
    return RoundResult(round=r, policy="p", policy_hash=None, train_search_success=None, decisions=None, preferences=None,
                       test_greedy=tg_, test_search=tg_, test_greedy_score=tg_, test_search_score=tg_, wall_s=0.0,
                       val_greedy=vg, val_search=vs, val_greedy_score=vg, val_search_score=vs)


def test_promotion_needs_a_validation_gain_and_ignores_test() -> None:
    incumbent = _row(0, 0.5, 0.5)
    assert beats(_row(1, 0.6, 0.5), incumbent)
    assert not beats(_row(1, 0.5, 0.5, tg_=1.0), incumbent)  # a test gain alone promotes nothing
    assert not beats(_row(1, 0.4, 0.5, tg_=1.0), incumbent)


def test_validation_is_held_out_of_the_training_split() -> None:
    train, val = split_validation(TRAIN, 0.34, seed=0)
    assert len(val) == 2 and not {t.id for t in train} & {t.id for t in val} and len(train) + len(val) == len(TRAIN)
    with pytest.raises(ConfigError, match="validation"):
        evolve(TRAIN, TEST, store=":memory:", out="/nonexistent", val=TRAIN[:1])


def _outcomes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_evolve_promotes_on_validation_and_resumes_after_a_kill(tmp_path: Path) -> None:
    whole = evolve(TRAIN, TEST, store=tmp_path / "a.db", out=tmp_path / "a", **OPTIONS)
    rows = whole.rounds
    assert [r.round for r in rows] == [0, 1]
    assert rows[1].promoted == beats(rows[1], rows[0])  # the rule, applied to real numbers
    assert whole.best is (rows[1] if rows[1].promoted else rows[0])
    assert whole.stopped == ("rounds" if rows[1].promoted else "validation stopped improving")
    assert whole.config["decoding"]["temperature"] in (0.0, 0.3) and set(whole.config["decoding"]["tried"]) == {"0", "0.3"}
    assert rows[0].targets is not None and rows[0].decisions is not None
    store = tg.Store(tmp_path / "a.db")
    assert {r.task for r in store.runs(tag="split:val")} <= set(whole.config["val_tasks"])
    assert not {r.task for r in store.runs(tag="split:train")} & set(whole.config["val_tasks"])
    saved = json.loads((tmp_path / "a" / "evolve.json").read_text())
    assert (tmp_path / "a" / "evolve.png").is_file() and saved["stopped"] == whole.stopped

    class Killed(Exception):
        pass

    def kill_at_search(label: str, total: int) -> Any:
        if label.startswith("round 0: search"):
            raise Killed(label)
        return lambda: None

    with pytest.raises(Killed):
        evolve(TRAIN, TEST, store=tmp_path / "b.db", out=tmp_path / "b", progress=kill_at_search, **OPTIONS)
    state = json.loads((tmp_path / "b" / STATE).read_text())
    assert state["partial"]["round"] == 0 and state["rows"] == []  # round 0 evaluated, then killed
    evaluated = len(tg.Store(tmp_path / "b.db").runs(tag="split:test"))
    resumed = evolve(TRAIN, TEST, store=tmp_path / "b.db", out=tmp_path / "b", **OPTIONS)
    assert _outcomes([dataclasses.asdict(r) for r in resumed.rounds])[0]["test_greedy"] == rows[0].test_greedy
    assert [(r.round, r.promoted, r.test_greedy, r.test_search, r.val_greedy, r.val_search) for r in resumed.rounds] == \
        [(r.round, r.promoted, r.test_greedy, r.test_search, r.val_greedy, r.val_search) for r in rows]
    # round 0's evaluation was not redone: only round 1's test runs were added
    assert len(tg.Store(tmp_path / "b.db").runs(tag="round:0")) and \
        len([r for r in tg.Store(tmp_path / "b.db").runs(tag="split:test") if "round:0" in r.tags]) == evaluated
    before = len(tg.Store(tmp_path / "b.db").runs())
    again = evolve(TRAIN, TEST, store=tmp_path / "b.db", out=tmp_path / "b", **OPTIONS)  # finished: nothing redone
    assert len(tg.Store(tmp_path / "b.db").runs()) == before
    assert [r.test_greedy for r in again.rounds] == [r.test_greedy for r in rows]


def test_the_value_model_of_each_round_learns_only_the_training_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trajgraph import reward as rw
    fit = importlib.import_module("trajgraph.reward.train")  # the module (the package's `train` is the function)

    fitted: list[Any] = []
    real_build = fit.build_dataset

    def build_and_keep(*args: Any, **kwargs: Any) -> Any:  # the real data the fit reads; we keep it
        fitted.append(real_build(*args, **kwargs))
        return fitted[-1]

    monkeypatch.setattr(fit, "build_dataset", build_and_keep)
    done = evolve(TRAIN, TEST, store=tmp_path / "v.db", out=tmp_path / "v", retrain_reward=True,
                  reward_options={"epochs": 1, "probe_steps": 10, "max_length": 64, "batch_size": 32}, **OPTIONS)
    (data,) = fitted
    train_tasks, held_out = set(done.config["train_tasks"]), set(done.config["val_tasks"]) | set(done.config["test_tasks"])
    assert data.groups and set(data.groups) <= train_tasks
    assert set(rw.build_dataset(str(tmp_path / "v.db")).groups) & held_out  # the store holds those searches: the filter is what kept them out
    value = done.rounds[0].next_value_model
    assert value is not None and value["name"] == "value-r1" and value["hash"] and (tmp_path / "v" / "value-r1").is_dir()
