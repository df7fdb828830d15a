"""The TRL path: SFT and DPO of SmolLM2-135M-Instruct on a store's data, a few steps on CPU.

The store holds one MCTS search of a deceptive chain (a successful trajectory and
step-level pairs). Each run trains for two steps and checks that the folder it
writes is a plain transformers model with a card, that it loads as a policy that
proposes admissible actions, and that training moved the model towards the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from trajgraph.learn import NoTrainingDataError, train_policy
from trajgraph.learn.graph import load_policy

try:  # the chain suite is moving from the test kit to trajgraph.testing.chain_suite (issue 9)
    from trajgraph.testing.chain_suite import ChainSuite
except ImportError:
    from trajgraph.testing.tiny_env import ChainSuite  # type: ignore[attr-defined,no-redef]
from trajgraph.testing.tiny_env import CHAIN_ACTIONS, ScriptedPolicy

TASK = ChainSuite(depth=3).tasks("train", 1)[0]
SETTINGS: dict[str, Any] = dict(max_steps=2, batch_size=1, max_length=128, lr=2e-4)


def _all_doors(state: dict[str, Any], k: int, rng: Any) -> list[dict[str, str]]:
    doors = list(CHAIN_ACTIONS)
    rng.shuffle(doors)
    return [{"action": a} for a in (doors * k)[:k]]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trl") / "search.db"
    graph, _ = TASK.make_graph(lambda state: {"action": "jump"})
    result = tg.search(graph, TASK.input, decision_node="policy", optimizer=tg.MCTS(k=4), outcome=TASK.outcome,
                       budget=tg.Budget(policy_calls=60), store=str(path), policy=ScriptedPolicy(_all_doors), task=TASK.id,
                       repeatable=True)
    assert result.outcome == 1.0
    return path


def _first_move_logprob(policy: Any) -> float:
    """log P(the solution's first move) as the next assistant turn at the chain's start."""
    from trajgraph.policies.lm import chat_of

    sums, _, _ = policy.model.score_replies(chat_of(TASK.input), [TASK.solution[0]])
    return float(sums[0])


def _check_folder(path: Path, method: str) -> dict[str, Any]:
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    assert not list(path.glob("*.bin")) and not list(path.glob("*.pt"))  # no pickle
    assert json.loads((path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]  # what servers read
    card = json.loads((path / "trajgraph-card.json").read_text())
    assert card["method"] == method and card["source_runs"]["count"] >= 1 and len(card["hash"]) == 64
    assert card["hash"] in (path / "README.md").read_text()
    return card


def test_sft_trains_smollm2_into_a_folder_that_loads_as_a_policy(store_path: Path, tmp_path: Path) -> None:
    result = train_policy(store_path, tmp_path / "sft", method="sft", **SETTINGS)
    card = _check_folder(result.path, "sft")
    assert card["data"]["sft"] >= 1 and card["metrics"]["sft"]["steps"] == 2
    policy = load_policy(result.path)
    for state in (TASK.input, {**TASK.input, "history": [{"action": TASK.solution[0], "observation": "room 1: three doors and a ledge"}]}):
        assert policy(state)["action"] in CHAIN_ACTIONS
    generate = load_policy(result.path, mode="generate", temperature=0.7)
    assert all(generate(TASK.input)["action"] in CHAIN_ACTIONS for _ in range(3))  # mapped to admissible, always
    from trajgraph.learn.lm import base_model_dir
    from trajgraph.policies.lm import load_lm_policy

    base = load_lm_policy(base_model_dir(None))
    assert _first_move_logprob(policy) > _first_move_logprob(base)  # two steps of SFT moved it towards the data


def test_dpo_trains_on_the_searchs_pairs(store_path: Path, tmp_path: Path) -> None:
    pairs = tg.Store(store_path).pairs()
    assert pairs
    result = train_policy(store_path, tmp_path / "dpo", method="dpo", lora=True, lora_r=4, **SETTINGS)  # LoRA, merged on save
    card = _check_folder(result.path, "dpo")
    assert card["data"]["dpo"] == len(tg.dpo_dataset(store_path, trajectory_pairs=False))
    assert card["metrics"]["dpo"]["steps"] == 2 and "last_rewards_accuracies" in card["metrics"]["dpo"]
    assert card["lora"] == {"r": 4} and not (result.path / "adapter_config.json").exists()  # adapters merged into the weights
    policy = load_policy(result.path)
    import asyncio

    proposals = asyncio.run(policy.propose(dict(TASK.input), 4))
    assert len(proposals) == 4 and all(p["action"] in CHAIN_ACTIONS for p in proposals)


def test_trl_refuses_a_store_without_the_data_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "failed.db"
    graph, _ = TASK.make_graph(lambda state: {"action": "jump"})
    tg.search(graph, TASK.input, decision_node="policy", optimizer=tg.Greedy(), outcome=TASK.outcome,
              budget=tg.Budget(policy_calls=5), store=str(path), task=TASK.id, repeatable=True)  # jumps: no success, no pairs
    with pytest.raises(NoTrainingDataError, match="no successful runs"):
        train_policy(path, tmp_path / "out", method="sft", **SETTINGS)
    with pytest.raises(NoTrainingDataError, match="no preference pairs"):
        train_policy(path, tmp_path / "out", method="dpo", **SETTINGS)
