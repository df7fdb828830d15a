"""Training the local reward model on recorded trajectories (CPU, small, deterministic).

The generated task: the deceptive chain (trajgraph.testing), one task per seed,
each with its own door sequence. Its observations tell how a step went ("room 2",
"the floor gives way", "a ledge ... no way on", "the exit"), so success is learnable
from the text and transfers to tasks never seen in training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from trajgraph.errors import ConfigError
from trajgraph.render import render_task, steps_to_turns
from trajgraph.reward import LocalRewardModel, RewardItem, train
from trajgraph.reward.metrics import spearman
from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph

FAST: dict[str, Any] = dict(max_length=64, freeze_layers=5, batch_size=16, progress=False)


def record_chain_runs(store: tg.Store, tasks: int, runs: int, depth: int = 3, seed0: int = 0) -> None:
    """Record `runs` episodes of each of `tasks` chains; the final env reward becomes Run.outcome."""
    for s in range(seed0, seed0 + tasks):
        graph = tg.record(
            deceptive_chain_graph(depth=depth, skill=0.5, trap=0.3, seed=s), store=store, task=lambda state: state["task"]
        )
        for _ in range(runs):
            graph.invoke(chain_start(f"chain-{s}"))
    for run in store.runs():
        store.update_run(run.id, outcome=run.output["reward"])


def brute_auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def held_out_steps(store: tg.Store, tasks: set[str]) -> tuple[list[RewardItem], list[bool]]:
    """Every decision step of every held-out run, as the search scores a node: prefix through its observation."""
    items, labels = [], []
    for run in store.runs():
        if run.task in tasks:
            turns = steps_to_turns(store.steps(run.id))
            for k in range(len(turns)):
                items.append(RewardItem(render_task(run.input), tuple(turns[: k + 1])))
                assert run.outcome is not None
                labels.append(run.outcome >= 0.5)
    return items, labels


@pytest.fixture(scope="module")
def chain_store(tmp_path_factory: pytest.TempPathFactory) -> tg.Store:
    store = tg.Store(tmp_path_factory.mktemp("chain") / "runs.db")
    record_chain_runs(store, tasks=10, runs=20)
    return store


@pytest.fixture(scope="module")
def trained(chain_store: tg.Store, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tg.reward.TrainReport]:
    out = tmp_path_factory.mktemp("rm") / "rm"
    report = train(chain_store, out, epochs=1, val_fraction=0.3, seed=0, lr=2e-5, **FAST)
    return out, report


def test_trained_model_ranks_held_out_successful_steps_above_failed_ones(chain_store, trained) -> None:
    out, report = trained
    val_tasks = set(report.extra["val_groups"])
    all_tasks = {r.task for r in chain_store.runs()}
    assert report.val_tasks == len(val_tasks) == 3 and report.train_tasks == 7
    assert report.n_train > 0 and report.n_val > 0
    items, labels = held_out_steps(chain_store, val_tasks)
    assert 0 < sum(labels) < len(labels)
    scores = LocalRewardModel(out, device="cpu").score(items)
    auc = brute_auc(scores, labels)
    assert auc >= 0.8, f"held-out AUC {auc:.3f}"
    # the split is by task: the validation tasks contributed nothing to training
    assert val_tasks < all_tasks
    trained_on = json.loads((out / "config.json").read_text())["training"]
    assert trained_on["val_tasks"] == 3 and trained_on["n_val"] == report.n_val


def test_report_has_per_epoch_metrics_and_keeps_the_best(trained) -> None:
    out, report = trained
    assert [e.epoch for e in report.epochs] == [0, 1]  # epoch 0: the probed head before fine-tuning
    for e in report.epochs:
        assert e.val_loss is not None and math.isfinite(e.val_loss)
        assert e.val_auc is not None and 0.0 <= e.val_auc <= 1.0
        assert e.val_pair_accuracy is not None  # sibling candidates of one prefix
    assert report.best is not None and report.best.val_auc == max(e.val_auc for e in report.epochs)
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "trajgraph-reward"
    assert config["formatter"]["template"] == "prefix-v1"
    assert config["tokenizer"]["max_length"] == 64
    assert config["backbone"]["model_type"] == "bert"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]


def test_save_load_gives_identical_scores_and_any_search_node_item_scores(chain_store, trained) -> None:
    out, _ = trained
    items, _ = held_out_steps(chain_store, {"chain-0", "chain-1"})
    items = items[:20] + [
        RewardItem("chain-3"),  # the root decision point: no turns yet
        RewardItem("chain-3", (("left", "room 1: three doors and a ledge"),), "jump"),  # a candidate action
        RewardItem("chain-3", [["up", "the floor gives way"]]),  # type: ignore[arg-type]  # lists, as JSON gives them
    ]
    a = LocalRewardModel(out, device="cpu").score(items)
    b = LocalRewardModel(out, device="cpu").score(items)
    assert a == b
    assert all(0.0 < s < 1.0 for s in a)
    # a failing observation scores below the same prefix's progress
    good, bad = LocalRewardModel(out).score(
        [RewardItem("chain-9", (("left", "room 1: three doors and a ledge"),)), RewardItem("chain-9", (("left", "the floor gives way"),))]
    )
    assert good > bad


def test_fast_cpu_paths_rank_like_fp32(chain_store, trained) -> None:
    out, _ = trained
    items, _ = held_out_steps(chain_store, {r.task for r in chain_store.runs()})
    items = list(dict.fromkeys(items))  # distinct prefixes of every task: many near-ties
    assert len(items) >= 50
    fp32 = LocalRewardModel(out, device="cpu").logits(items)
    bf16 = LocalRewardModel(out, device="cpu", fast="bf16")
    assert bf16.fast == "bf16"
    rho = spearman(fp32, bf16.logits(items))
    assert rho >= 0.99, f"bf16 Spearman {rho:.4f}"
    # int8 is the coarser option (per-batch activation scales); it must still rank broadly alike
    rho8 = spearman(fp32, LocalRewardModel(out, device="cpu", fast="int8").logits(items))
    assert 0.85 <= rho8 < 1.0, f"int8 Spearman {rho8:.4f}"
    auto = LocalRewardModel(out, device="cpu", fast="auto")
    assert auto.fast in ("bf16", None)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> tg.Store:
    store = tg.Store(tmp_path_factory.mktemp("small") / "small.db")
    record_chain_runs(store, tasks=3, runs=6, depth=2, seed0=20)
    return store


TINY: dict[str, Any] = dict(FAST, epochs=1, probe_steps=50, max_length=48, val_fraction=0.34)


def test_fixed_seed_gives_the_same_model(small_store, tmp_path: Path) -> None:
    train(small_store, tmp_path / "a", seed=7, **TINY)
    train(small_store, tmp_path / "b", seed=7, **TINY)
    train(small_store, tmp_path / "c", seed=8, **TINY)
    weights = [(tmp_path / d / "model.safetensors").read_bytes() for d in "abc"]
    assert weights[0] == weights[1]
    assert weights[0] != weights[2]


def test_the_passes_without_gradients_run_in_the_precision_asked_for(small_store, tmp_path: Path) -> None:
    import torch

    from trajgraph.reward import _fit, _net

    seen: list[bool] = []

    def fn(items: list[Any]) -> Any:
        seen.append(torch.is_autocast_enabled("cpu"))
        return torch.ones(len(items), 2)

    class _Enc:
        def __call__(self, items: list[Any]) -> list[Any]:
            return [type("E", (), {"ids": [0] * (i + 1)})() for i in range(len(items))]

    assert _fit.run_all(fn, ["a", "b", "c"], _Enc(), 2).shape == (3, 2) and seen == [False, False]  # type: ignore[arg-type]
    _fit.run_all(fn, ["a", "b", "c"], _Enc(), 2, bf16_on="cpu")  # type: ignore[arg-type]  # (a stand-in for the encode cache)
    assert seen[2:] == [True, True]
    # the probe's features and the validation numbers move with the precision; the fine-tuning stays fp32
    # (every layer trained: frozen layers' cached states serve training too, so with them the passes stay fp32)
    reports = {p: train(small_store, tmp_path / p, seed=7, passes=p, **dict(TINY, freeze_layers=0)) for p in ("fp32", "bf16", "auto")}
    frozen = train(small_store, tmp_path / "frozen", seed=7, passes="bf16", **TINY)
    assert frozen.epochs[0].val_loss == train(small_store, tmp_path / "frozen32", seed=7, passes="fp32", **TINY).epochs[0].val_loss
    fp32, bf16 = (reports[p].epochs[0].val_loss for p in ("fp32", "bf16"))
    assert fp32 is not None and bf16 is not None and fp32 != bf16 and abs(fp32 - bf16) < 0.05
    assert reports["auto"].epochs[0].val_loss == (bf16 if _net.cpu_has_amx() else fp32)
    with pytest.raises(ConfigError, match="passes"):
        train(small_store, tmp_path / "x", passes="fp16", **TINY)


def test_the_training_steps_run_in_the_precision_asked_for(small_store, tmp_path: Path) -> None:
    from trajgraph.reward import _net

    # the probe (epoch 0) has no training step: the same in every precision; the fine-tuning epoch moves a little
    reports = {p: train(small_store, tmp_path / p, seed=7, train_precision=p, **dict(TINY, freeze_layers=0))
               for p in ("fp32", "bf16", "auto")}
    probe, tuned = ({p: r.epochs[i].train_loss for p, r in reports.items()} for i in (0, 1))
    assert probe["fp32"] == probe["bf16"] == probe["auto"]
    assert tuned["fp32"] != tuned["bf16"] and abs(tuned["fp32"] - tuned["bf16"]) < 0.05
    assert tuned["auto"] == (tuned["bf16"] if _net.cpu_has_amx() else tuned["fp32"])
    # frozen layers: their cached fp32 states serve the steps, so a CPU trains them in fp32 whatever is asked
    frozen = train(small_store, tmp_path / "frozen", seed=7, train_precision="bf16", **TINY)
    assert frozen.epochs[1].train_loss == train(small_store, tmp_path / "frozen32", seed=7, train_precision="fp32", **TINY).epochs[1].train_loss
    with pytest.raises(ConfigError, match="train_precision"):
        train(small_store, tmp_path / "x", train_precision="fp16", **TINY)


def test_early_stopping_keeps_the_best_epoch(small_store, tmp_path: Path) -> None:
    # lr 1e-30 (0 is refused): fp32 weights cannot move, so fine-tuning cannot improve on the probed head and
    # patience 1 stops after one epoch
    report = train(small_store, tmp_path / "rm", seed=7, **dict(TINY, epochs=3), lr=1e-30, head_lr=1e-30, patience=1)
    assert report.stopped_early
    assert [e.epoch for e in report.epochs] == [0, 1]
    assert report.best_epoch == 0


def test_cli_trains_and_scores(small_store, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trajgraph.cli import app

    out = tmp_path / "rm"
    args = ["reward", "train", "--db", str(small_store.path), "--out", str(out), "--epochs", "1", "--max-length", "48",
            "--freeze-layers", "5", "--no-progress", "--val-fraction", "0.34"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "saved" in result.output and (out / "model.safetensors").is_file()
    run = small_store.runs(limit=1)[0]
    result = CliRunner().invoke(app, ["reward", "score", run.id[:12], "--db", str(small_store.path), "--model", str(out)])
    assert result.exit_code == 0, result.output
    assert "score" in result.output and run.id[:12] in result.output
    result = CliRunner().invoke(app, ["reward", "score", run.id, "--db", str(small_store.path), "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2  # bad input: the CLI's error contract
    assert "no such reward model directory" in result.output


def test_training_needs_labelled_data(tmp_path: Path) -> None:
    store = tg.Store(tmp_path / "empty.db")
    graph = tg.record(deceptive_chain_graph(depth=2), store=store)
    graph.invoke(chain_start())  # recorded, but no outcome was ever set
    with pytest.raises(ConfigError, match="no runs with an outcome"):
        train(store, tmp_path / "rm", labels="outcome", progress=False)
    with pytest.raises(ConfigError, match="labels="):
        train(store, tmp_path / "rm", labels="vibes", progress=False)


def test_train_or_reuse_keys_by_content(tmp_path: Path) -> None:
    """The same data, settings and code: the cached model is copied, byte for byte; a changed
    setting or more data trains again (issue 20: the demo reuses its reward model across runs)."""
    from trajgraph.reward import train_or_reuse

    small_store = tg.Store(tmp_path / "own.db")
    record_chain_runs(small_store, tasks=3, runs=6, depth=2, seed0=20)
    cache = tmp_path / "cache"
    first = train_or_reuse(small_store, tmp_path / "a", cache_root=cache, seed=7, **TINY)
    again = train_or_reuse(small_store, tmp_path / "b", cache_root=cache, seed=7, **TINY)
    assert not first.reused and again.reused and again.key == first.key
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert again.report["n_train"] == first.report["n_train"] > 0
    from dataclasses import replace as _replace

    from trajgraph.reward import build_dataset

    data = build_dataset(small_store, "auto")
    shuffled = _replace(data, examples=data.examples[::-1], pairs=data.pairs[::-1])  # runs stored in another order
    assert train_or_reuse(shuffled, tmp_path / "e", cache_root=cache, seed=7, **TINY).key == first.key
    other_seed = train_or_reuse(small_store, tmp_path / "c", cache_root=cache, seed=8, **TINY)
    assert not other_seed.reused and other_seed.key != first.key
    record_chain_runs(small_store, tasks=1, runs=2, depth=2, seed0=40)  # new data in the store
    more = train_or_reuse(small_store, tmp_path / "d", cache_root=cache, seed=7, **TINY)
    assert not more.reused and more.key not in (first.key, other_seed.key)
