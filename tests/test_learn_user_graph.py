"""Learning from a user's own graph (issue 22) and received model folders (issue 21, items 1-2).

The user's graph here keeps every key under its own name (goal, seen, options, moves,
choice), builds its first state in a reset node from {task_id, variation}, keeps its
history as a plain list of action strings overwritten each step, and decides with its
own policy (scores + temperature).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import warnings
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

import trajgraph as tg
from trajgraph.envloop import StateMap
from trajgraph.errors import ConfigError, RewardModelError
from trajgraph.learn import decisions, preferences, train_policy
from trajgraph.learn.data import ReadReport, UnreadDecisionsError, UnreadDecisionsWarning
from trajgraph.learn.graph import load_policy, with_policy
from trajgraph.learn.train import NotImprovedWarning
from trajgraph.policies.head import load_trainable_policy, trainable_policy

COLORS = ["red", "green", "blue", "yellow"]
SMAP = StateMap(task="goal", observation="seen", actions="options", history="moves", action="choice", history_reducer="replace")


def code_of(variation: int) -> list[str]:
    return random.Random(variation).sample(COLORS, 2)


class VaultState(TypedDict, total=False):
    task_id: str
    variation: int
    goal: str
    seen: str
    options: list[str]
    moves: list[str]
    choice: str
    reward: float
    done: bool


def reset(state: VaultState) -> dict[str, Any]:
    a, b = code_of(state["variation"])
    return {"goal": f"Open the vault. First press the {a} button. Then press the {b} button.", "seen": "The door is shut.",
            "options": [f"press {c}" for c in COLORS], "moves": [], "done": False}


def env(state: VaultState) -> dict[str, Any]:
    moves = [*state.get("moves", []), state["choice"]]
    right = moves == [f"press {c}" for c in code_of(state["variation"])][: len(moves)]
    done = not right or len(moves) == 2
    out: dict[str, Any] = {"moves": moves, "seen": f"Click: {len(moves)} lit." if right else "Bzzt.", "done": done}
    if done:
        out["reward"] = 1.0 if right else 0.0
    return out


class WordMatcher:
    """The user's policy: options whose words are in the goal, sampled at 0.5 with a per-state seed."""

    temperature = 0.5

    def scores(self, state: dict[str, Any]) -> list[float]:
        goal = set(state["goal"].lower().replace(".", "").split())
        return [float(len(goal & set(o.split()))) + 0.01 * i for i, o in enumerate(state["options"])]

    def __call__(self, state: dict[str, Any]) -> dict[str, Any]:
        scores = self.scores(state)
        weights = [math.exp((s - max(scores)) / self.temperature) for s in scores]
        seed = hashlib.sha256(repr((state["goal"], state.get("moves"))).encode()).digest()
        return {"choice": random.Random(seed).choices(state["options"], weights=weights)[0]}


def build(policy: Any = None, reducer_history: bool = False) -> Any:
    g = StateGraph(VaultState)
    g.add_node("reset", reset)
    g.add_node("decide", policy or WordMatcher())
    g.add_node("env", env)
    g.add_edge(START, "reset")
    g.add_conditional_edges("reset", lambda s: END if s.get("done") else "decide", ["decide", END])
    g.add_edge("decide", "env")
    g.add_conditional_edges("env", lambda s: END if s.get("done") else "decide", ["decide", END])
    return g.compile(name="vault")


class EveryOption:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    async def propose(self, state: dict[str, Any], k: int) -> list[dict[str, Any]]:
        options = list(state["options"])
        self.rng.shuffle(options)
        return [{"choice": o} for o in (options * k)[:k]]


@pytest.fixture(scope="module")
def vault_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Searches of 6 vaults from the natural input {task_id, variation}; the reset node builds the state."""
    path = tmp_path_factory.mktemp("vault") / "vault.db"
    agent = build()
    for v in range(6):
        result = tg.search(agent, {"task_id": f"vault-{v}", "variation": v}, decision_node="decide", optimizer=tg.MCTS(k=4),
                           budget=tg.Budget(policy_calls=60), store=str(path), policy=EveryOption(v), task=f"vault-{v}", repeatable=True)
        assert result.outcome == 1.0
    return path


# -- 1. every decision read ----------------------------------------------------------------


def test_every_decision_of_a_reset_node_graph_is_read(vault_db: Path) -> None:
    report = ReadReport()
    ds = decisions(vault_db, state_map=SMAP, report=report, on_unread="error", trim_loops=False)
    assert report.decision_steps > 0 and report.read == report.decision_steps and not report.short
    firsts = [d for d in ds if not d.state["history"]]  # the first decision, built by the reset node
    assert firsts and all(d.state["task"].startswith("Open the vault") and d.state["actions"] == [f"press {c}" for c in COLORS]
                          for d in firsts)
    assert {d.state["task"] for d in firsts} == {reset({"variation": v})["goal"] for v in range(6)}
    assert all(d.raw is not None and d.raw["variation"] == int(str(d.task).split("-")[1]) for d in ds)
    ps = preferences(vault_db, state_map=SMAP)
    assert ps and all(p.state["task"].startswith("Open the vault") and p.raw is not None for p in ps)


def test_unread_decisions_are_counted_and_said(vault_db: Path, tmp_path: Path) -> None:
    # a store whose rollouts lack the reset step (as written before): rebuilt from the input alone
    from trajgraph.store import Store

    old = tmp_path / "old.db"
    source, target = Store(str(vault_db)), Store(str(old))
    runs = sorted(source.runs(), key=lambda r: r.kind != "search")  # a rollout names its search
    target.write(runs=runs[:6])
    target.write(runs=runs[6:], steps=[s for r in runs for s in source.steps(r.id) if s.node != "reset"])
    source.close()
    target.close()
    with pytest.raises(UnreadDecisionsError, match=r"run \S+ gave 0 of 2.*no 'options'"):
        decisions(old, state_map=SMAP, on_unread="error")
    with pytest.warns(UnreadDecisionsWarning, match="decision steps"):
        decisions(old, state_map=SMAP)
    with pytest.raises(UnreadDecisionsError):
        train_policy(old, tmp_path / "head", state_map=SMAP)


# -- 2. one documented mapping, checked ---------------------------------------------------------


def test_the_default_mapping_refuses_a_graph_with_other_keys(vault_db: Path) -> None:
    with pytest.raises(ConfigError, match=r"decision update has no 'action' \(keys: \['choice'\]\)"):
        decisions(vault_db, on_unread="error")
    add_history = StateMap(task="goal", observation="seen", actions="options", history="moves", action="choice")
    with pytest.raises(ConfigError, match=r"whole 'moves'.*history_reducer='replace'"):
        decisions(vault_db, state_map=add_history)


def test_state_map_names_a_mis_shaped_key_and_adapts_action_strings() -> None:
    base = {"goal": "g", "seen": "o", "options": ["a", "b"], "moves": ["a", ["b", "ob"], {"action": "c"}]}
    view = SMAP.view(base)
    assert view["history"] == [{"action": "a", "observation": ""}, {"action": "b", "observation": "ob"}, {"action": "c", "observation": ""}]
    assert view["task"] == "g" and view["actions"] == ["a", "b"]
    with pytest.raises(ConfigError, match="'options' must be a list of action strings, got str"):
        SMAP.view({**base, "options": "a b"})
    with pytest.raises(ConfigError, match="'options' must be a list of action strings, got a list holding dict"):
        SMAP.view({**base, "options": [{"a": 1}]})
    with pytest.raises(ConfigError, match="'moves' must be a list of turns, got str"):
        SMAP.view({**base, "moves": "a"})
    with pytest.raises(ConfigError, match="'moves' must be a list of turns.*an item is int"):
        SMAP.view({**base, "moves": [3]})
    with pytest.raises(ConfigError, match="no 'goal'"):
        SMAP.view({"seen": "o", "options": ["a"]})
    with pytest.raises(ConfigError, match="unknown field"):
        StateMap.from_dict({"tasks": "x"})


# -- 3. no silent no-op, the card says what ran -------------------------------------------------


def test_a_fit_that_kept_its_start_says_so_and_the_card_reports_what_ran(vault_db: Path, tmp_path: Path) -> None:
    with pytest.warns(NotImprovedWarning, match="kept the initial weights"):
        result = train_policy(vault_db, tmp_path / "noop", state_map=SMAP, graph=build(), decision_node="decide", lr=0.0,
                              epochs=2, min_steps=5)
    card = result.card
    assert result.improved is False and card["improved"] is False
    assert card["improvement"]["before"]["loss"] == pytest.approx(card["improvement"]["after"]["loss"])
    fit = card["fit"]
    assert fit["best_epoch"] == 0 and fit["config"]["epochs"] == 2 and fit["epochs_run"] >= 5 and "epochs" not in fit
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotImprovedWarning)
        good = train_policy(vault_db, tmp_path / "good", state_map=SMAP, graph=build(), decision_node="decide", epochs=3, min_steps=20)
    assert good.improved and good.card["improved"] is True
    assert good.card["improvement"]["after"]["loss"] < good.card["improvement"]["before"]["loss"]


# -- 4. content hashes --------------------------------------------------------------------------


def test_the_same_head_saved_twice_has_the_same_hash_and_a_changed_one_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    policy = trainable_policy(hidden=8)
    a = json.loads((policy.save(tmp_path / "a") / "policy.json").read_text())["hash"]
    b = json.loads((policy.save(tmp_path / "b") / "policy.json").read_text())["hash"]
    assert a == b == policy.card["hash"] == trainable_policy(hidden=8).card["hash"]
    assert load_trainable_policy(tmp_path / "a").card["hash"] == a
    weights = load_file(str(tmp_path / "b" / "head.safetensors"))
    weights["mlp.2.bias"] = weights["mlp.2.bias"] + 1.0
    save_file(weights, str(tmp_path / "b" / "head.safetensors"))
    with pytest.raises(ConfigError, match=rf"hash to [0-9a-f]{{12}}, but the card says {a[:12]}"):
        load_trainable_policy(tmp_path / "b")
    assert trainable_policy(hidden=8, temperature=0.5).card["hash"] != a  # settings count too


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.pop("hidden"), "no 'hidden'"),
    (lambda c: c.update(hidden="abc"), "'hidden' must be an integer"),
    (lambda c: c.update(hidden=1_000_000_000), "'hidden' = 1000000000 is out of range"),
    (lambda c: c.update(temperature="hot"), "'temperature' must be a finite number"),
    (lambda c: c.update(features=3), "'features' must be one of"),
    (lambda c: c.update(base="node"), "'base' must say"),
])
def test_malformed_cards_are_one_config_error(tmp_path: Path, change: Any, message: str) -> None:
    folder = trainable_policy(hidden=8).save(tmp_path / "p")
    card = json.loads((folder / "policy.json").read_text())
    change(card)
    (folder / "policy.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match=message):
        load_policy(folder)


def test_a_card_that_is_a_list_or_truncated_weights_are_one_config_error(tmp_path: Path) -> None:
    folder = trainable_policy(hidden=8).save(tmp_path / "p")
    data = (folder / "head.safetensors").read_bytes()
    (folder / "head.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="not a readable safetensors file"):
        load_policy(folder)
    (folder / "policy.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must be a JSON object, got list"):
        load_policy(folder)


# -- 5. the user's policy stays the base --------------------------------------------------------


def test_the_untrained_head_is_the_users_agent_and_says_its_base(tmp_path: Path) -> None:
    agent = build()
    head = trainable_policy(base=WordMatcher(), state_map=SMAP)
    assert head.card["base"] == {"kind": "node", "source": "scores", "weight0": 1.0, "name": "WordMatcher", "temperature": 0.5}
    state = {**reset({"variation": 3}), "variation": 3, "moves": ["press red"]}
    commands, scores = head.ranked(state)
    assert scores == pytest.approx([s / 0.5 for s in WordMatcher().scores(state)], abs=1e-5)  # the user's logits, exactly
    head.save(tmp_path / "h")
    served = with_policy(agent, tmp_path / "h", decision_node="decide")
    for v in range(8):
        assert served.invoke({"task_id": "x", "variation": v}) == agent.invoke({"task_id": "x", "variation": v})
    with pytest.raises(ConfigError, match="starts from its graph's own decision node"):
        load_policy(tmp_path / "h")
    # a head on the library's ranker says so, and is used only when asked for
    assert trainable_policy().card["base"]["kind"] == "minilm"


def test_a_trained_head_starts_from_the_users_node_and_serves_it(vault_db: Path, tmp_path: Path) -> None:
    result = train_policy(vault_db, tmp_path / "t", state_map=SMAP, graph=build(), decision_node="decide", epochs=3, min_steps=20)
    assert result.card["base"]["kind"] == "node" and result.card["state_map"]["actions"] == "options"
    policy = load_trainable_policy(tmp_path / "t", base=WordMatcher())
    assert not policy.reproduces_base
    out = with_policy(build(), tmp_path / "t", decision_node="decide").invoke({"task_id": "x", "variation": 40})
    assert out["moves"][0] in out["options"] and out["done"]
    asked = train_policy(vault_db, tmp_path / "m", state_map=SMAP, graph=build(), decision_node="decide", prior="minilm", epochs=1, min_steps=5)
    assert asked.card["base"]["kind"] == "minilm"


# -- 6. large action sets ---------------------------------------------------------------------


def test_top_k_scores_only_the_bases_best_actions() -> None:
    head = trainable_policy(hidden=8, base=WordMatcher(), state_map=SMAP, top_k=2)
    state = {**reset({"variation": 5}), "variation": 5}
    commands, _ = head.ranked(state)
    scores = WordMatcher().scores(state)
    best = sorted(range(len(scores)), key=lambda i: -scores[i])[:2]
    assert commands == [state["options"][i] for i in sorted(best)]
    assert head(state)["choice"] in commands
    with pytest.raises(ConfigError, match="top_k must be a positive integer"):
        trainable_policy(top_k=0)


# -- issue 21: received model folders never run code ---------------------------------------------


def _evil_folder(tmp_path: Path, config: dict[str, Any]) -> tuple[Path, Path]:
    folder = tmp_path / "evil"
    folder.mkdir()
    marker = tmp_path / "ran.txt"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return folder, marker


def test_a_model_folder_asking_for_its_own_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    from trajgraph.policies.lm import load_lm_policy
    from trajgraph.reward._net import load_backbone

    folder, marker = _evil_folder(tmp_path, {"model_type": "llama", "architectures": ["EvilForCausalLM"],
                                             "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}})
    with pytest.raises(ConfigError, match="field 'auto_map' asks to run code"):
        load_policy(folder)
    with pytest.raises(ConfigError, match="auto_map"):
        load_lm_policy(folder)
    with pytest.raises(RewardModelError, match="auto_map"):
        load_backbone(folder)
    assert not marker.exists()


def test_a_reward_model_folder_with_huge_sizes_is_refused_before_allocating(tmp_path: Path) -> None:
    from trajgraph.reward._net import FORMAT, load

    folder = tmp_path / "rm"
    folder.mkdir()
    config = {"format": FORMAT, "format_version": 1, "backbone": {"model_type": "bert", "hidden_size": 1_000_000_000},
              "head": {"hidden_size": 8}, "formatter": {}, "tokenizer": {"max_length": 8}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(RewardModelError, match="'hidden_size' = 1000000000 is out of range"):
        load(folder)
    config["backbone"] = {"model_type": "bert", "hidden_size": "abc"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RewardModelError, match="'hidden_size' must be an integer"):
        load(folder)


def test_evolve_does_not_promote_a_fit_that_did_not_improve(tmp_path: Path) -> None:
    from trajgraph.learn.evolve import evolve

    try:
        from trajgraph.testing.chain_suite import ChainSuite
    except ImportError:
        from trajgraph.testing.tiny_env import ChainSuite  # type: ignore[attr-defined,no-redef]
    suite = ChainSuite(depth=3)
    with pytest.warns(NotImprovedWarning):
        report = evolve(suite.tasks("train", 2), suite.tasks("test", 2), store=tmp_path / "e.db", out=tmp_path / "out", rounds=2,
                        optimizer="mcts", budget=40, train_options={"lr": 0.0, "epochs": 1, "min_steps": 2})
    assert report.stopped == "not improved" and report.policies == []
    assert [r.round for r in report.rounds] == [0]  # round 1 was never evaluated: the base was not replaced
