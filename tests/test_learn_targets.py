"""Soft policy targets read from a real search tree in a real SQLite store, and a head fit on them.

The chain (trajgraph.testing) is deceptive: "jump" pays 0.3 at once, the exit
(1.0) needs the right door at every step. An MCTS search over all four doors
finds the exit; its tree, read back, must value the exit's doors highest at
every depth, and a head trained on those targets alone (no cloning, no pairs)
must walk the chain greedily where the untrained head falls into the trap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from trajgraph.learn import train_policy
from trajgraph.learn.targets import lm_rows, search_targets, write_lm_rows
from trajgraph.policies.head import load_trainable_policy, trainable_policy
from trajgraph.store import Store
from trajgraph.testing.chain_suite import ChainSuite
from trajgraph.testing.tiny_env import CHAIN_ACTIONS, ScriptedPolicy

TASK = ChainSuite().tasks("train", 1)[0]


def _all_doors(state: dict[str, Any], k: int, rng: Any) -> list[dict[str, str]]:
    doors = list(CHAIN_ACTIONS)
    rng.shuffle(doors)
    return [{"action": a} for a in (doors * k)[:k]]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("targets") / "search.db"
    graph, _ = TASK.make_graph(trainable_policy(temperature=0.0))
    result = tg.search(graph, TASK.input, decision_node="policy", optimizer=tg.MCTS(k=4), outcome=TASK.outcome,
                       budget=tg.Budget(policy_calls=120), store=str(path), policy=ScriptedPolicy(_all_doors), task=TASK.id,
                       repeatable=True, tags=("split:train",))
    assert result.outcome == 1.0
    return path


def test_targets_rank_the_exit_first_at_every_depth_of_the_stored_tree(searched: Path) -> None:
    targets = sorted(search_targets(searched), key=lambda t: len(t.state["history"]))
    assert [t.best for t in targets] == list(TASK.solution)  # one target per depth, on the exit's path
    for depth, t in enumerate(targets):
        assert [h["action"] for h in t.state["history"]] == list(TASK.solution[:depth])
        assert t.state["actions"] == list(CHAIN_ACTIONS) and len(t.q) >= 3
        dist = t.distribution("q", 0.1)
        assert max(dist, key=dist.__getitem__) == TASK.solution[depth] and abs(sum(dist.values()) - 1) < 1e-9
        assert t.weight("spread") > 0 and t.sources == {"mcts"}
    # the mean backup sees mostly failed rollouts under the exit's first door: the trap looks better
    mean_first = min(search_targets(searched, backup="mean"), key=lambda t: len(t.state["history"]))
    assert mean_first.q["jump"] > mean_first.q[TASK.solution[0]]
    # failed rollouts count: the root's value is the mean of every finished trajectory, below 1
    assert 0 < targets[0].value < 1
    with Store(searched) as db:  # the values come from the stored tree, not from the pairs
        assert db.search_nodes(db.runs(kind="search")[0].id)
    assert search_targets(searched, tags=("split:test",)) == []


def test_lm_rows_give_weighted_sft_rows_and_dpo_pairs(searched: Path, tmp_path: Path) -> None:
    sft, dpo = lm_rows(search_targets(searched))
    assert [r["action"] for r in sorted(sft, key=lambda r: len(r["state"]["history"]))] == list(TASK.solution)
    assert all(r["weight"] > 0 for r in sft)
    assert dpo and all(p["chosen"] != p["rejected"] and p["margin"] >= 0.1 for p in dpo)
    sft_path, dpo_path = write_lm_rows(searched, tmp_path / "lm")
    rows = [json.loads(x) for x in sft_path.read_text().splitlines()]
    assert len(rows) == len(sft) and {r["messages"][-1]["content"] for r in rows} == set(TASK.solution)
    assert all(r["messages"][-1]["role"] == "assistant" and r["weight"] > 0 for r in rows)
    pairs = [json.loads(x) for x in dpo_path.read_text().splitlines()]
    assert len(pairs) == len(dpo) and all(p["chosen"][0]["content"] != p["rejected"][0]["content"] for p in pairs)


def test_head_fit_on_search_targets_alone_beats_the_untrained_head(searched: Path, tmp_path: Path) -> None:
    graph, _ = TASK.make_graph(trainable_policy(temperature=0.0))
    assert float(graph.invoke(TASK.input)["reward"]) < 1.0  # the untrained head takes the trap or a wrong door
    out = tmp_path / "head"
    card = train_policy(searched, out, temperature=0.0, bc_weight=0.0, pair_weight=0.0, detour_weight=0.0, use_pairs=False,
                        use_detours=False, seed=0).card
    assert card["data"]["targets"] == len(TASK.solution) and card["data"]["decisions"] == 0
    assert card["metrics"]["train_target_top1"] == 1.0
    graph, _ = TASK.make_graph(load_trainable_policy(out))
    assert float(graph.invoke(TASK.input)["reward"]) == 1.0
