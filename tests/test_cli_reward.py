"""One declaration per setting: `RewardTrainConfig` drives `reward.train` and `trajgraph reward train`;
one set of run-filter options drives `runs` and every export command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, cast

import pytest
import typer
from typer.testing import CliRunner

import trajgraph as tg
from tests.test_reward_train import record_chain_runs
from trajgraph.cli import app
from trajgraph.cli._common import FILTER_NAMES
from trajgraph.errors import ConfigError
from trajgraph.reward import RewardTrainConfig, train


def _command(*path: str) -> typer.core.TyperCommand:
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return cmd  # type: ignore[return-value]


def _options(*path: str) -> set[str]:
    return {p.name for p in _command(*path).params if p.name}


def test_reward_train_options_are_the_config_fields() -> None:
    cli_fields = {f.name for f in dataclasses.fields(RewardTrainConfig) if f.metadata["cli"]}
    assert cli_fields >= {"epochs", "batch_size", "lr", "seed", "val_fraction", "max_length", "freeze_layers", "threshold",
                          "backbone", "device", "progress", "labels", "patience", "probe_steps", "head_lr", "decision_nodes"}
    assert _options("reward", "train") == cli_fields | {"out_arg", "out", "db"}
    helps = {p.name: cast(Any, p).help for p in _command("reward", "train").params}  # typer's options and arguments carry help
    assert all(helps[f.name] == f.metadata["help"] for f in dataclasses.fields(RewardTrainConfig) if f.metadata["cli"])


def test_the_config_checks_its_bounds_for_the_function_and_the_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="val_fraction=2"):
        RewardTrainConfig(val_fraction=2)
    with pytest.raises(ConfigError, match="epochs=0: must be at least 1"):
        train(tmp_path / "none.db", tmp_path / "rm", epochs=0)
    with pytest.raises(ConfigError, match="epochs=0"):  # keywords override the config's fields
        train(tmp_path / "none.db", tmp_path / "rm", RewardTrainConfig(epochs=2), epochs=0)
    with pytest.raises(ConfigError, match="unknown reward training setting bogus"):
        train(tmp_path / "none.db", tmp_path / "rm", bogus=1)
    result = CliRunner().invoke(app, ["reward", "train", str(tmp_path / "rm"), "--db", str(tmp_path / "x.db"), "--epochs", "0"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: epochs=0: must be at least 1"
    assert RewardTrainConfig(labels="outcome, mc").label_kinds == ("outcome", "mc") and RewardTrainConfig().label_kinds == "auto"


def test_cli_settings_reach_training(tmp_path: Path) -> None:
    store = tg.Store(tmp_path / "small.db")
    record_chain_runs(store, tasks=3, runs=6, depth=2, seed0=20)
    store.close()
    out = tmp_path / "rm"
    result = CliRunner().invoke(app, ["reward", "train", "--out", str(out), "--db", str(store.path), "--seed", "3", "--epochs", "1",
                                      "--probe-steps", "0", "--max-length", "48", "--freeze-layers", "5", "--no-progress",
                                      "--val-fraction", "0.34", "--labels", "outcome"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "config.json").read_text())
    training = meta["training"]
    assert training["seed"] == 3 and [e["epoch"] for e in training["epochs"]] == [1] and training["labels"] == ["outcome"]
    assert meta["tokenizer"]["max_length"] == 48  # the default is 128


@pytest.mark.parametrize("path", [("runs",), ("export", "sft"), ("export", "dpo"), ("export", "prm"), ("export", "spans")])
def test_every_listing_and_export_takes_the_same_run_filters(path: tuple[str, ...]) -> None:
    assert set(FILTER_NAMES) <= _options(*path)
    flags = {p.name: p.opts for p in _command(*path).params}
    assert all(flags[name] == [f"--{name.replace('_', '-')}"] for name in FILTER_NAMES)
