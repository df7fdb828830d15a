"""Learning from search: the trainable MiniLM policy, train_policy, with_policy and evolve.

The toy task is one deceptive chain (trajgraph.testing): the untrained policy
(= the MiniLM ranker) walks into it greedily and fails; an MCTS search finds the
way; the head trained on that search's data then solves it greedily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from trajgraph.errors import ConfigError
from trajgraph.learn import NoTrainingDataError, decisions, preferences, train_policy
from trajgraph.learn.evolve import check_splits, evolve
from trajgraph.learn.graph import load_policy, with_policy
from trajgraph.policies.head import load_trainable_policy, trainable_policy

try:  # the chain suite is moving from the test kit to trajgraph.testing.chain_suite (issue 9)
    from trajgraph.testing.chain_suite import ChainSuite
except ImportError:
    from trajgraph.testing.tiny_env import ChainSuite  # type: ignore[attr-defined,no-redef]
from trajgraph.testing.tiny_env import CHAIN_ACTIONS, ScriptedPolicy

TASK = ChainSuite().tasks("train", 1)[0]


def _all_doors(state: dict[str, Any], k: int, rng: Any) -> list[dict[str, str]]:
    doors = list(CHAIN_ACTIONS)
    rng.shuffle(doors)
    return [{"action": a} for a in (doors * k)[:k]]


def _greedy_outcome(policy: Any) -> float:
    graph, _ = TASK.make_graph(policy)
    return float(graph.invoke(TASK.input)["reward"])


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one MCTS search of the chain task (it finds the exit)."""
    path = tmp_path_factory.mktemp("learn") / "search.db"
    graph, _ = TASK.make_graph(trainable_policy(temperature=0.0))
    result = tg.search(graph, TASK.input, decision_node="policy", optimizer=tg.MCTS(k=4), outcome=TASK.outcome,
                       budget=tg.Budget(policy_calls=120), store=str(path), policy=ScriptedPolicy(_all_doors), task=TASK.id,
                       repeatable=True)
    assert result.outcome == 1.0
    return path


@pytest.fixture(scope="module")
def trained(searched: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("learn") / "head"
    train_policy(searched, out, temperature=0.0, name="chain-head")
    return out


def test_store_data_rebuilds_the_states_the_policy_saw(searched: Path) -> None:
    ds = decisions(searched)
    assert [d.action for d in sorted(ds, key=lambda d: len(d.state["history"]))] == list(TASK.solution)
    first = min(ds, key=lambda d: len(d.state["history"]))
    assert first.state["observation"] == TASK.input["observation"] and first.state["actions"] == list(CHAIN_ACTIONS)
    assert all(p.chosen != p.rejected and p.source == "mcts" for p in preferences(searched))


def test_trained_head_solves_the_chain_the_base_policy_fails(trained: Path) -> None:
    assert _greedy_outcome(trainable_policy(temperature=0.0)) < 1.0  # the base ranker fails it
    policy = load_trainable_policy(trained)
    assert _greedy_outcome(policy) == 1.0
    card = json.loads((trained / "policy.json").read_text())
    assert card["data"]["decisions"] == len(TASK.solution) and card["data"]["preferences"] > 0
    assert card["source_runs"]["count"] >= 1 and card["round"] == 1 and card["metrics"]["train_top1"] == 1.0
    cov = card["coverage"]
    assert cov["tasks"] == cov["tasks_solved"] == 1 and cov["successful_runs"] >= 1 and cov["runs"] > cov["successful_runs"]
    assert set(cov["actions_by_verb"]) == set(CHAIN_ACTIONS) and cov["actions"] == 4
    assert policy.version["hash"] == card["hash"] and policy.name == f"chain-head@{card['hash'][:12]}"


def test_a_saved_head_loads_back_identical_and_its_hash_covers_the_weights(trained: Path, tmp_path: Path) -> None:
    a, b = load_trainable_policy(trained), load_trainable_policy(trained)
    state = dict(TASK.input)
    assert a.scores(state) == b.scores(state)
    copy = tmp_path / "copy"
    b.head.base_weight.data += 1.0
    b.save(copy)
    assert json.loads((copy / "policy.json").read_text())["hash"] != a.version["hash"]


def test_untrained_head_ranks_like_the_minilm_policy() -> None:
    from trajgraph.policies import minilm_policy

    state = {"task": "take the red key", "observation": "A red key and a blue key.", "actions": ["take red key", "take blue key", "look"], "history": []}
    base = minilm_policy().scores(state)
    head = trainable_policy().scores(state)
    assert head == pytest.approx([s * 10 for s in base], abs=1e-4)


def test_train_policy_refuses_what_it_cannot_learn_from(tmp_path: Path) -> None:
    empty = tg.Store(tmp_path / "empty.db").setup()
    empty.close()
    with pytest.raises(NoTrainingDataError, match="no successful env-loop runs"):
        train_policy(tmp_path / "empty.db", tmp_path / "out")
    with pytest.raises(ConfigError, match="does not exist"):
        train_policy(tmp_path / "missing.db", tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown training method"):
        train_policy(tmp_path / "empty.db", tmp_path / "out", method="ppo")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ConfigError, match="not a trained policy folder"):
        load_policy(tmp_path / "junk")
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nowhere")


def test_with_policy_records_and_searches_like_any_graph(trained: Path, tmp_path: Path) -> None:
    base_graph, _ = TASK.make_graph(lambda state: {"action": "jump"})  # the user's own agent: always jumps
    assert base_graph.invoke(TASK.input)["reward"] == 0.3
    graph = with_policy(base_graph, trained, decision_node="policy")
    assert graph.invoke(TASK.input)["reward"] == 1.0

    store = tg.Store(tmp_path / "runs.db")
    recorded = tg.record(graph, store=store, name="chain", decision_nodes=["policy"])
    assert recorded.invoke(TASK.input)["reward"] == 1.0
    store.flush()
    run = store.runs(kind="record")[0]
    assert [s.action["action"] for s in store.steps(run.id) if s.action is not None] == list(TASK.solution)

    # the search's candidates come from the trained policy (the graph's own decision node)
    result = tg.search(graph, TASK.input, decision_node="policy", optimizer=tg.Greedy(), outcome=TASK.outcome,
                       budget=tg.Budget(policy_calls=20), store=store, repeatable=True)
    assert result.outcome == 1.0 and result.spent.policy_calls == len(TASK.solution)
    # ... or from it as policy= on the user's unchanged graph
    result = tg.search(base_graph, TASK.input, decision_node="policy", optimizer=tg.Greedy(), outcome=TASK.outcome,
                       budget=tg.Budget(policy_calls=20), policy=load_policy(trained), repeatable=True)
    assert result.outcome == 1.0
    optimized = tg.optimize(graph, decision_node="policy", optimizer="best-of-n", outcome=TASK.outcome,
                            budget=tg.Budget(policy_calls=10), repeatable=True)
    assert optimized.invoke(TASK.input)["reward"] == 1.0


def test_with_policy_refuses_an_unknown_node_or_policy(trained: Path) -> None:
    graph, _ = TASK.make_graph(lambda state: {"action": "jump"})
    with pytest.raises(ConfigError, match="not in graph"):
        with_policy(graph, trained, decision_node="agent")
    with pytest.raises(ConfigError, match="propose"):
        with_policy(graph, 42, decision_node="policy")


def test_evolve_stores_each_rounds_runs_under_its_policy_version(tmp_path: Path) -> None:
    suite = ChainSuite(depth=3)
    train, test = suite.tasks("train", 2), suite.tasks("test", 2)
    rows: list[Any] = []
    report = evolve(train, test, store=tmp_path / "evolve.db", out=tmp_path / "out", rounds=1, optimizer="mcts", budget=40,
                    train_options={"epochs": 5, "min_steps": 50}, on_round=rows.append)
    assert [r.round for r in report.rounds] == [0, 1] == [r.round for r in rows]
    assert report.rounds[0].train_search_success is not None and report.rounds[0].decisions
    assert report.rounds[1].policy == "evolve-r1" and report.rounds[1].policy_hash
    assert (tmp_path / "out" / "evolve.png").is_file() and (tmp_path / "out" / "policy-r1" / "policy.json").is_file()
    saved = json.loads((tmp_path / "out" / "evolve.json").read_text())
    assert [r["test_greedy"] for r in saved["rounds"]] == [r.test_greedy for r in report.rounds]

    store = tg.Store(tmp_path / "evolve.db")
    trained_hash = json.loads((tmp_path / "out" / "policy-r1" / "policy.json").read_text())["hash"]
    r0 = store.runs(tag="round:0")
    r1 = store.runs(tag="round:1")
    assert r0 and r1
    assert {r.metadata["policy"]["hash"] for r in r1} == {trained_hash}
    assert all(r.metadata["policy"]["hash"] != trained_hash for r in r0)
    assert all(f"policy:evolve-r1@{trained_hash[:12]}" in r.tags for r in r1)
    # training read only the training split: round 0's train searches, never a test run
    trained_on = json.loads((tmp_path / "out" / "policy-r1" / "policy.json").read_text())["data"]["tasks"]
    assert set(trained_on) <= {t.id for t in train}
    assert {r.task for r in store.runs(tag="split:test")} <= {t.id for t in test}


def test_evolve_refuses_overlapping_splits() -> None:
    tasks = ChainSuite().tasks("train", 3)
    with pytest.raises(ConfigError, match="shares 1 task"):
        check_splits(tasks[:2], tasks[1:2] + ChainSuite().tasks("test", 1))


def test_cli_train_policy_and_evolve(searched: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trajgraph.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["train", "policy", str(tmp_path / "head"), "--db", str(searched), "--epochs", "5"])
    assert ok.exit_code == 0, ok.output
    assert "saved" in ok.output and (tmp_path / "head" / "policy.json").is_file()

    tg.Store(tmp_path / "empty.db").setup().close()
    bad = runner.invoke(app, ["train", "policy", str(tmp_path / "h2"), "--db", str(tmp_path / "empty.db")])
    assert bad.exit_code == 2 and "no successful env-loop runs" in bad.output and bad.output.count("\n") == 1
    missing = runner.invoke(app, ["evolve", str(tmp_path / "ev"), "--policy", str(tmp_path / "nowhere"), "--train-tasks", "2", "--tasks", "1"])
    assert missing.exit_code == 2 and "does not exist" in missing.output

    res = runner.invoke(app, ["evolve", str(tmp_path / "ev"), "--suite", "chain", "--train-tasks", "2", "--tasks", "2", "--rounds", "1",
                              "--optimizer", "mcts", "--budget", "30", "--epochs", "3", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "round 0: policy minilm-head@" in res.output and "round 1: policy chain-r1@" in res.output
    assert (tmp_path / "ev" / "evolve.png").is_file() and (tmp_path / "ev" / "evolve.db").is_file()


def test_the_demos_learning_round_adds_trained_rows(tmp_path: Path) -> None:
    from trajgraph.learn.demo import LearningSettings, Round, learning_round
    from trajgraph.policies import minilm_policy

    suite = ChainSuite(depth=3)
    test = suite.tasks("test", 2)
    base = minilm_policy(seed=0)
    store = tg.Store(tmp_path / "demo.db")

    def once() -> Any:
        return learning_round(suite, test, base_for=lambda task: base.view(), reward=None, budget=30, store=store, out=tmp_path / "out",
                              seed=0, workers=1, graph_name="chain",
                              settings=LearningSettings(train_games=3, rounds=(Round(explore=("mcts",)),), search="best-of-n", epochs=3,
                                                        search_temperature=None))

    first = once()
    assert first.names[0].startswith("greedy · base best decoding (") and first.names[0].endswith(", chosen on train)")
    assert first.names[1:] == ["greedy · trained argmax", "best-of-n · trained (T=0.3)"]
    assert first.decoding["tasks"] == 3 and set(first.decoding["tried"]) == {"0", "0.1", "0.3"}
    best = max(first.decoding["tried"].values())  # the chosen temperature scored best on the training games
    assert tuple(first.decoding["tried"][f"{first.decoding['temperature']:g}"]) == tuple(best)
    assert [c["round"] for c in first.curve] == [0, 1] and first.plot and Path(first.plot).is_file()
    assert sorted({r.optimizer for r in first.results}) == sorted(first.names) and len(first.results) == 3 * len(test)
    assert first.card["data"]["tasks"] and not set(first.card["data"]["tasks"]) & {t.id for t in test}
    assert [(r.optimizer, r.outcome, r.policy_calls) for r in once().results] == [(r.optimizer, r.outcome, r.policy_calls) for r in first.results]


def test_every_batch_of_the_learning_round_can_run_elsewhere_from_its_player(tmp_path: Path) -> None:
    import asyncio

    from trajgraph import bench
    from trajgraph.learn.demo import Batch, LearningSettings, Player, Round, learning_round
    from trajgraph.policies import minilm_policy

    suite = ChainSuite(depth=3)
    test = suite.tasks("test", 2)
    base = minilm_policy(seed=0)
    settings = LearningSettings(train_games=3, rounds=(Round(explore=("mcts",)),), search="best-of-n", epochs=3, decoding_games=0,
                                search_temperature=None)
    calls: list[tuple[str, tuple[str, ...], Player | None, bool, tuple[str, ...]]] = []

    def elsewhere(store: Any) -> Any:  # what `trajgraph demo` does: another process, given only the batch's player
        def run(batch: Batch, on_result: Any) -> list[Any]:
            calls.append((batch.split, batch.optimizers, batch.player, batch.scored, batch.tags))
            loaded = batch.player.load() if batch.player is not None else base
            return asyncio.run(bench.run_bench(batch.tasks, list(batch.optimizers), policy_for=lambda task: loaded.view(), budget=30,
                                               store=store, concurrency=1, tags=batch.tags, graph_name="chain", repeatable=True,
                                               on_result=on_result))
        return run

    rows = {}
    for name, hook in (("here", False), ("elsewhere", True)):
        store = tg.Store(tmp_path / f"{name}.db")
        done = learning_round(suite, test, base_for=lambda task: base.view(), reward=None, budget=30, store=store,
                              out=tmp_path / name, seed=0, workers=1, graph_name="chain", settings=settings,
                              elsewhere=elsewhere(store) if hook else None)
        rows[name] = [(r.optimizer, r.outcome, r.policy_calls) for r in done.results]
    head = str(tmp_path / "elsewhere" / "policy-r1")
    assert calls == [("test", ("greedy",), Player(0.0, 0), True, ("test", "learn")),  # the base at its decoding
                     ("train", ("mcts",), None, False, ("train", "learn")),  # round 1 explores with the bench's own policy
                     ("test", ("greedy",), Player(0.0, 0, head), True, ("test", "learn")),  # the trained head, argmax
                     ("test", ("best-of-n",), Player(0.3, 0, head), True, ("test", "learn"))]  # and at its temperature
    assert rows["elsewhere"] == rows["here"]


def test_later_rounds_explore_with_the_last_head_at_argmax_and_round_one_can_learn_from_the_store(tmp_path: Path) -> None:
    import asyncio

    from trajgraph import bench
    from trajgraph.learn.demo import Batch, LearningSettings, Player, Round, learning_round
    from trajgraph.policies import minilm_policy

    suite = ChainSuite(depth=3)
    test, train = suite.tasks("test", 2), suite.tasks("train", 3)
    base = minilm_policy(seed=0)
    store = tg.Store(tmp_path / "demo.db")
    # what the demo's reward-model exploration leaves in the store: searches of the first training games, tagged "train"
    asyncio.run(bench.run_bench(train[:2], ["mcts"], policy_for=lambda task: base.view(), budget=30, store=store, concurrency=1,
                                tags=("train",), graph_name="chain", repeatable=True))
    settings = LearningSettings(train_games=3, rounds=(Round(), Round(explore=("apprentice",), games=2, explore_temperature=0.0,
                                                                      from_last=True, options=(("min_steps", 7),))),
                                search="apprentice", search_temperature=0.0, epochs=3, decoding_games=0)
    calls: list[tuple[str, tuple[str, ...], Player | None, list[str]]] = []

    def elsewhere(batch: Batch, on_result: Any) -> list[Any]:
        calls.append((batch.split, batch.optimizers, batch.player, [t.id for t in batch.tasks]))
        loaded = batch.player.load() if batch.player is not None else base
        return asyncio.run(bench.run_bench(batch.tasks, list(batch.optimizers), policy_for=lambda task: loaded.view(), budget=30,
                                           store=store, concurrency=1, tags=batch.tags, graph_name="chain", repeatable=True,
                                           on_result=on_result))

    done = learning_round(suite, test, base_for=lambda task: base.view(), reward=None, budget=30, store=store, out=tmp_path / "out",
                          seed=0, workers=1, graph_name="chain", settings=settings, elsewhere=elsewhere)
    r1, r2 = (str(tmp_path / "out" / f"policy-r{r}") for r in (1, 2))
    ids = [t.id for t in test]
    assert calls == [("test", ("greedy",), Player(0.0, 0), ids),
                     ("test", ("greedy",), Player(0.0, 0, r1), ids),  # round 1 searched nothing: it learned from the store's runs
                     ("train", ("apprentice",), Player(0.0, 0, r1), [t.id for t in train[1:]]),  # round 2: the last games, head r1 at argmax
                     ("test", ("greedy",), Player(0.0, 0, r2), ids),
                     ("test", ("apprentice",), Player(0.0, 0, r2), ids)]
    assert done.names[1:] == ["greedy · trained r1 argmax", "greedy · trained r2 argmax", "apprentice · trained (argmax)"]
    assert [c["round"] for c in done.curve] == [0, 1, 2]
    first = load_trainable_policy(r1).card["data"]
    assert set(first["tasks"]) == {t.id for t in train[:2]}  # the reward model's games only: nothing else was searched yet
    second = load_trainable_policy(r2).card
    assert second["fit"]["config"]["min_steps"] == 7 and load_trainable_policy(r1).card["fit"]["config"]["min_steps"] == 100  # each round's options
    assert second["parent"] == load_trainable_policy(r1).card["hash"]  # round 2's head continued from round 1's


def test_detours_are_found_and_trimmed_from_successes() -> None:
    from trajgraph.learn.data import run_decisions, run_detours
    from trajgraph.trajectory import Run, Step

    moves = ["A", "B"]
    run = Run(id="r", input={"task": "reach C", "observation": "in A", "actions": moves, "history": []})
    script = [("e", "in B"), ("w", "in A"), ("n", "in C")]
    steps = []
    for i, (action, obs) in enumerate(script):
        steps.append(Step(run_id="r", seq=2 * i, node="policy", update={"action": action}, action={"action": action}))
        steps.append(Step(run_id="r", seq=2 * i + 1, node="env", update={"observation": obs, "actions": moves,
                                                                          "history": [{"action": action, "observation": obs}]}))
    assert [a for _, a in run_decisions(run, steps)] == ["e", "w", "n"]
    kept = run_decisions(run, steps, trim_loops=True)
    assert [a for _, a in kept] == ["n"] and len(kept[0][0]["history"]) == 2
    loops = run_detours(run, steps)
    assert [(s["observation"], a) for s, a in loops] == [("in A", "e")]

    # "commands": the observation is feedback, the admissible actions are the state: a look-around is a no-op
    look = [("look", "a room"), ("n", "in C")]
    steps = [s for i, (action, obs) in enumerate(look) for s in (
        Step(run_id="r", seq=2 * i, node="policy", update={"action": action}, action={"action": action}),
        Step(run_id="r", seq=2 * i + 1, node="env", update={"observation": obs, "actions": moves if action == "look" else ["C"],
                                                            "history": [{"action": action, "observation": obs}]}))]
    assert [a for _, a in run_decisions(run, steps, trim_loops=True)] == ["look", "n"]
    assert [a for _, a in run_decisions(run, steps, trim_loops=True, situation="commands")] == ["n"]
    assert [a for _, a in run_detours(run, steps, situation="commands")] == ["look"]
    with pytest.raises(ConfigError, match="situation"):
        run_detours(run, steps, situation="room")


def test_a_missing_extra_is_one_line_naming_it(searched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from typer.testing import CliRunner

    from trajgraph.cli import app

    monkeypatch.setitem(sys.modules, "trl", None)  # as if the learn extra were not installed: `import trl` fails
    with pytest.raises(ConfigError, match=r"needs trl.*pip install 'trajgraph\[learn\]'"):
        train_policy(searched, tmp_path / "sft", method="sft")
    res = CliRunner().invoke(app, ["train", "policy", str(tmp_path / "sft"), "--db", str(searched), "--method", "sft"])
    assert res.exit_code == 2 and "trajgraph[learn]" in res.output and res.output.count("\n") == 1


def test_learning_settings_refuse_rounds_that_are_not_rounds() -> None:
    from trajgraph.errors import ConfigError
    from trajgraph.learn.demo import DEMO_ROUNDS, LearningSettings

    assert LearningSettings().rounds == DEMO_ROUNDS and len(DEMO_ROUNDS) == 2
    for bad in ((), 2, ({"explore": ("mcts",)},)):
        with pytest.raises(ConfigError, match="Round"):
            LearningSettings(rounds=bad)  # type: ignore[arg-type]
