"""Rewards for search: a local transformer reward model, an LLM judge, combinations.

Every reward answers `score(items) -> list[float]` (and `ascore`) over
`RewardItem`s: a task, the turns so far, an optional candidate action. Higher
is better, roughly in [0, 1].

    rm = tg.reward.train("runs.db", "rm/")          # fit on recorded trajectories
    rm = tg.LocalRewardModel("rm/")                  # load; CUDA bf16, or CPU (fast="auto": measured)

Importing this package does not import torch or transformers; they load when a
model is trained or loaded.
"""

from __future__ import annotations

from trajgraph.reward.base import Formatter, Reward, RewardItem
from trajgraph.reward.combine import EnvReward, Weighted
from trajgraph.reward.data import Dataset, build_dataset
from trajgraph.reward.judge import Judgement, LLMJudge
from trajgraph.reward.local import LocalRewardModel
from trajgraph.reward.train import EpochStats, Reuse, RewardTrainConfig, TrainReport, init_model, train, train_or_reuse

__all__ = [
    "RewardItem",
    "Reward",
    "Formatter",
    "LocalRewardModel",
    "train",
    "train_or_reuse",
    "Reuse",
    "RewardTrainConfig",
    "init_model",
    "TrainReport",
    "EpochStats",
    "Dataset",
    "build_dataset",
    "LLMJudge",
    "Judgement",
    "EnvReward",
    "Weighted",
]
