"""Reward items, the formatter, metrics, and training sets read from a store written directly."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from trajgraph.errors import ConfigError
from trajgraph.render import render_prefix
from trajgraph.reward import EnvReward, Formatter, Reward, RewardItem, Weighted, build_dataset
from trajgraph.reward.data import split_groups
from trajgraph.reward.metrics import sibling_accuracy, spearman, weighted_auc
from trajgraph.trajectory import PreferencePair, Run, SearchNode, Step

# -- items and the formatter --------------------------------------------------------------


def test_reward_item_normalises_turns_and_renders_like_render_prefix() -> None:
    item = RewardItem("find the key", [["go north", "a door"], ("open door", "")], "take key")  # type: ignore[arg-type]  # lists on purpose
    assert item.turns == (("go north", "a door"), ("open door", ""))
    assert hash(item) == hash(RewardItem("find the key", (("go north", "a door"), ("open door", "")), "take key"))
    assert item.text == render_prefix("find the key", item.turns, "take key")
    assert Formatter().text(item) == item.text
    assert Formatter().text(RewardItem("t")) == "Task: t"


def test_formatter_keeps_the_newest_turns_with_their_numbers_and_clips_long_fields() -> None:
    item = RewardItem("t", tuple((f"a{k}", f"o{k}") for k in range(1, 6)))
    text = Formatter(max_turns=2).text(item)
    assert "[1]" not in text and "[4] Action: a4" in text and "[5] Observation: o5" in text
    long = RewardItem("t", (("act", "x" * 50 + "VERDICT"),))
    clipped = Formatter(max_field_chars=20).text(long)
    assert "VERDICT" in clipped and " … " in clipped and len(clipped) < len(long.text)
    assert Formatter.from_dict(Formatter(max_turns=3).to_dict()) == Formatter(max_turns=3)


def test_from_steps_uses_decision_steps() -> None:
    steps = [
        Step("r", 0, "policy", action={"action": "left"}, update={"action": "left"}),
        Step("r", 1, "env", update={"observation": "room 1"}),
        Step("r", 2, "policy", action={"action": "jump"}, update={"action": "jump"}),
    ]
    assert RewardItem.from_steps("t", steps).turns == (("left", "room 1"), ("jump", ""))


# -- metrics --------------------------------------------------------------------------------


def test_weighted_auc_matches_brute_force() -> None:
    rng = random.Random(3)
    scores = [rng.choice([0.1, 0.2, 0.5, 0.7, 0.9]) for _ in range(30)]  # ties on purpose
    pos = [rng.randint(0, 3) for _ in scores]
    neg = [rng.randint(0, 3) for _ in scores]
    expanded = [(s, True) for s, p in zip(scores, pos) for _ in range(p)] + [(s, False) for s, n in zip(scores, neg) for _ in range(n)]
    p_scores = [s for s, y in expanded if y]
    n_scores = [s for s, y in expanded if not y]
    brute = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(p_scores, n_scores)) / (len(p_scores) * len(n_scores))
    assert weighted_auc(scores, pos, neg) == pytest.approx(brute)
    assert weighted_auc([0.1, 0.2], [1, 1], [0, 0]) is None


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    with pytest.raises(ValueError):
        spearman([1], [1])


# -- training sets from a store ----------------------------------------------------------------


def _env_run(store: tg.Store, run_id: str, task: str, moves: list[tuple[str, str]], outcome: float | None, **kw) -> None:
    steps = []
    for k, (action, obs) in enumerate(moves):
        steps.append(Step(run_id, 2 * k, "policy", action={"action": action}, update={"action": action}))
        steps.append(Step(run_id, 2 * k + 1, "env", update={"observation": obs}))
    store.write(runs=[Run(run_id, graph="g", task=task, input={"task": task}, outcome=outcome, status="succeeded", **kw)], steps=steps)


@pytest.fixture
def store(tmp_path: Path) -> tg.Store:
    store = tg.Store(tmp_path / "runs.db")
    _env_run(store, "r1", "t1", [("left", "room 1"), ("up", "exit")], 1.0)
    _env_run(store, "r2", "t1", [("left", "room 1"), ("jump", "ledge")], 0.3)
    _env_run(store, "r3", "t2", [("up", "floor gives way")], 0.0)
    _env_run(store, "r4", "t2", [("up", "floor gives way")], None)  # no outcome: not a training run
    # a search over task t3: root, two children, a grandchild; values are Monte Carlo means
    store.write(runs=[Run("s1", graph="g", kind="search", task="t3", input={"task": "t3"}, status="succeeded")])
    store.write(
        search_nodes=[
            SearchNode("s1", 0, value=0.5),
            SearchNode("s1", 1, parent_id=0, depth=1, action_text="left", observation="room 1", value=0.8),
            SearchNode("s1", 2, parent_id=0, depth=1, action_text="jump", observation="ledge", terminal=True, outcome=0.3),
            SearchNode("s1", 3, parent_id=1, depth=2, action_text="up", observation="exit", terminal=True, outcome=1.0, value=1.0),
            SearchNode("s1", 4, parent_id=1, depth=2, action_text="down", observation="", invalid=True),
        ],
        pairs=[
            PreferencePair("s1", "rro", prompt={"task": "t3", "history": [["left", "room 1"]]},
                           chosen={"action": {"action": "up"}, "text": "up"}, rejected={"action": {"action": "down"}}, task="t3"),
            PreferencePair("s1", "trajectory", prompt=[{"role": "user", "content": "messages prompt"}], chosen="a", rejected="b"),
        ],
    )
    return store


def test_outcome_labels_cover_both_item_forms_of_every_decision_step(store: tg.Store) -> None:
    data = build_dataset(store, "outcome")
    by_item = {(e.group, e.item): e for e in data.examples}
    # r1 and r2 share their first step: merged, label = mean outcome, count 2, one success
    first = by_item[("t1", RewardItem("t1", (), "left"))]
    assert (first.label, first.count, first.positives) == (pytest.approx(0.65), 2, 1)
    assert by_item[("t1", RewardItem("t1", (("left", "room 1"),)))].count == 2
    assert by_item[("t1", RewardItem("t1", (("left", "room 1"),), "up"))].label == 1.0
    assert by_item[("t1", RewardItem("t1", (("left", "room 1"), ("jump", "ledge"))))].label == pytest.approx(0.3)
    assert by_item[("t2", RewardItem("t2", (("up", "floor gives way"),)))].count == 1  # r4 has no outcome
    assert len(data.examples) == 3 + 3 + 2
    assert {e.source for e in data.examples} == {"outcome"}
    only_state = build_dataset(store, "outcome", forms=("state",))
    assert all(e.item.action is None for e in only_state.examples) and len(only_state.examples) == 4


def test_monte_carlo_values_label_the_prefix_that_reaches_each_node(store: tg.Store) -> None:
    data = build_dataset(store, "mc")
    got = {e.item: e.label for e in data.examples}
    assert got[RewardItem("t3", (("left", "room 1"),))] == 0.8
    assert got[RewardItem("t3", (), "left")] == 0.8
    assert got[RewardItem("t3", (("left", "room 1"), ("up", "exit")))] == 1.0
    assert got[RewardItem("t3", (("left", "room 1"),), "up")] == 1.0
    assert got[RewardItem("t3", (("jump", "ledge"),))] == pytest.approx(0.3)  # terminal outcome stands in for value
    assert not any(i.action == "down" or ("down", "") in i.turns for i in got)  # no value, no label
    assert len(got) == 6 and {e.group for e in data.examples} == {"t3"}


def test_preference_pairs_share_their_prefix(store: tg.Store) -> None:
    data = build_dataset(store, "pairs")
    assert data.examples == ()
    (pair,) = data.pairs  # the message-prompt pair is skipped
    assert pair.chosen == RewardItem("t3", (("left", "room 1"),), "up")
    assert pair.rejected == RewardItem("t3", (("left", "room 1"),), "down")
    assert pair.group == "t3" and pair.source == "rro"


def test_auto_takes_everything_and_splits_by_task(store: tg.Store) -> None:
    data = build_dataset(store)
    assert data.groups == ["t1", "t2", "t3"]
    assert len(data.pairs) == 1 and {e.source for e in data.examples} == {"outcome", "mc"}
    train, val = data.split(0.34, seed=1)
    assert set(train.groups).isdisjoint(val.groups) and len(val.groups) == 1
    assert set(train.groups) | set(val.groups) == {"t1", "t2", "t3"}
    assert len(train.examples) + len(val.examples) == len(data.examples)


def test_tags_keep_only_those_runs_with_their_rollouts_and_pairs(store: tg.Store) -> None:
    # s1 is a training-split search; r1 is its rollout (a child, untagged, as searches write them);
    # r3 is a test-split search's rollout; r2 stands alone untagged
    store.write(run_updates=[("s1", {"tags": ("evolve", "split:train")}), ("r1", {"parent_id": "s1"})])
    store.write(runs=[Run("s2", graph="g", kind="search", task="t2", input={"task": "t2"}, status="succeeded",
                          tags=("evolve", "split:test"))])
    store.write(run_updates=[("r3", {"parent_id": "s2"})],
                pairs=[PreferencePair("s2", "rro", prompt={"task": "t2", "history": []}, chosen={"text": "up"},
                                      rejected={"text": "down"}, task="t2")])
    every = build_dataset(store)
    assert {e.group for e in every.examples} == {"t1", "t2", "t3"} and {p.group for p in every.pairs} == {"t2", "t3"}
    train = build_dataset(store, tags=("split:train",))
    assert {e.group for e in train.examples} == {"t1", "t3"}  # s1's nodes, and r1 under it; r2 and r3 left out
    outcomes = {e.item: e for e in train.examples if e.source == "outcome"}
    assert outcomes[RewardItem("t1", (), "left")].count == 1  # r1 alone: r2 shares the step but is not under s1
    assert [p.group for p in train.pairs] == ["t3"]  # s2's pair is the test split's
    assert build_dataset(store, tags=("split:train", "evolve")).examples == train.examples  # every tag must be there
    with pytest.raises(ConfigError, match="among runs tagged split:val"):
        build_dataset(store, tags=("split:val",))


def test_split_groups_is_seeded_and_never_empties_training() -> None:
    groups = [f"t{i}" for i in range(10)]
    assert split_groups(groups, 0.2, seed=3) == split_groups(groups, 0.2, seed=3)
    assert split_groups(groups, 0.2, seed=3) != split_groups(groups, 0.2, seed=4)
    train, val = split_groups(groups, 0.2, seed=3)
    assert len(val) == 2 and sorted(train + val) == groups
    assert split_groups(["only"], 0.5) == (["only"], [])
    assert len(split_groups(["a", "b"], 0.9)[0]) == 1


def test_rewards_outside_unit_range_are_scaled_and_outcome_can_be_overridden(tmp_path: Path) -> None:
    store = tg.Store(tmp_path / "scores.db")
    _env_run(store, "a", "ta", [("go", "won")], 10.0)
    _env_run(store, "b", "tb", [("go", "lost")], -10.0)
    data = build_dataset(store, "outcome", threshold=5.0)
    labels = {e.item.turns[0][1] if e.item.turns else e.item.action: e.label for e in data.examples if e.item.turns}
    assert labels == {"won": 1.0, "lost": 0.0} and data.scale == (-10.0, 10.0)
    assert sum(e.positives for e in data.examples) == 2  # both items of run a
    flipped = build_dataset(store, "outcome", outcome=lambda run: 1.0 if run.id == "b" else 0.0)
    assert {e.item.turns[0][1]: e.label for e in flipped.examples if e.item.turns} == {"won": 0.0, "lost": 1.0}


def test_empty_store_and_bad_arguments(tmp_path: Path) -> None:
    store = tg.Store(tmp_path / "empty.db")
    with pytest.raises(ConfigError, match="no runs with an outcome, no search nodes with a value, no preference pairs"):
        build_dataset(store)
    with pytest.raises(ConfigError, match="forms="):
        build_dataset(store, forms=("prefix",))


def test_sibling_accuracy_counts_candidates_of_one_prefix() -> None:
    from trajgraph.reward.data import Example

    a = Example(RewardItem("t", (), "good"), 0.9, "t")
    b = Example(RewardItem("t", (), "bad"), 0.1, "t")
    c = Example(RewardItem("t", (("x", "y"),), "other prefix"), 0.5, "t")
    assert sibling_accuracy([a, b, c], [0.8, 0.2, 0.0]) == 1.0
    assert sibling_accuracy([a, b, c], [0.2, 0.8, 0.0]) == 0.0
    assert sibling_accuracy([c], [0.1]) is None


# -- EnvReward and Weighted ------------------------------------------------------------------------


class _Const:
    def __init__(self, value: float) -> None:
        self.value = value

    def score(self, items):
        return [self.value for _ in items]

    async def ascore(self, items):
        return self.score(items)


def test_weighted_mixes_rewards() -> None:
    import asyncio

    mix = Weighted([(_Const(1.0), 3), (_Const(0.0), 1)])
    assert isinstance(mix, Reward)
    assert mix.score([RewardItem("t")] * 2) == [0.75, 0.75]
    assert asyncio.run(mix.ascore([RewardItem("t")])) == [0.75]
    assert mix.score([]) == []
    bad: Any
    for bad in ([], [(_Const(1), -1)], [(_Const(1), 0)], [(EnvReward(), 1)], [("not a reward", 1)]):
        with pytest.raises(ConfigError):
            Weighted(bad)


def test_env_reward_reads_states_and_refuses_prefixes() -> None:
    env = EnvReward()
    assert env.from_state({"reward": 1}) == 1.0 and env.from_state({"done": False}) is None
    assert EnvReward("score").from_state({"score": 0.4}) == 0.4
    assert env.score([]) == []
    with pytest.raises(ConfigError, match="no score for an unfinished prefix"):
        env.score([RewardItem("t")])
