"""trajgraph: record, search, score, replay and learn from LangGraph agent trajectories.

    import trajgraph as tg
    store = tg.Store("runs.db")
    agent = tg.record(graph, store=store)                       # record
    best = tg.optimize(graph, decision_node="agent",            # search
                       optimizer=tg.MCTS(), budget=tg.Budget(policy_calls=64), store=store)
    tg.replay(store, run_id, graph=graph)                       # replay / fork

`import trajgraph` is light: torch, transformers and environment packages load
only where they are used (the reward model, the adapters).
"""

from __future__ import annotations

import importlib
from typing import Any

from trajgraph.errors import (
    BudgetError,
    ConfigError,
    ForkError,
    InputError,
    NotAStoreError,
    ReplayError,
    RewardModelError,
    RunNotFoundError,
    SchemaTooNewError,
    StoreError,
    TrajgraphError,
)
from trajgraph.recording.record import record
from trajgraph.replay import ReplayResult, RunDiff, afork, areplay, diff, fork, replay  # eager: a lazy name would lose to the submodule
from trajgraph.search.budget import Budget, Spent
from trajgraph.search.optimize import SearchResult, SearchSettings, asearch, optimize, search
from trajgraph.search.optimizers import MCTS, RRO, BestOfN, Greedy, Optimizer, SEAgent
from trajgraph.search.policy import ChatModelPolicy, LiteLLMPolicy, Policy
from trajgraph.search.rollout_value import RolloutValue
from trajgraph.search.scoring import Scorer, as_reward
from trajgraph.search.space import Candidate, Environment, Node, Space
from trajgraph.search.tree import TreeLog
from trajgraph.store import Store
from trajgraph.trajectory import ModelCall, PreferencePair, Run, SearchNode, Step, Trajectory

__version__ = "0.1.0"

# Names whose modules pull heavy or optional dependencies: imported on first use.
_LAZY = {
    "LocalRewardModel": "trajgraph.reward",
    "LLMJudge": "trajgraph.reward",
    "EnvReward": "trajgraph.reward",
    "Weighted": "trajgraph.reward",
    "RewardItem": "trajgraph.reward",
    "reward": "trajgraph.reward",
    "export": "trajgraph.export",
    "sft_dataset": "trajgraph.export",
    "dpo_dataset": "trajgraph.export",
    "prm_dataset": "trajgraph.export",
    "write_dataset": "trajgraph.export",
    "export_spans": "trajgraph.export.otel",
    "train_policy": "trajgraph.learn",
    "evolve": "trajgraph.learn",
    "with_policy": "trajgraph.learn",
    "load_policy": "trajgraph.learn",
    "TrainablePolicy": "trajgraph.adapters.policies.trainable",
    "trainable_policy": "trajgraph.adapters.policies.trainable",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trajgraph' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


__all__ = [
    # store and data
    "Store",
    "Run",
    "Step",
    "ModelCall",
    "SearchNode",
    "PreferencePair",
    "Trajectory",
    # record / replay
    "record",
    "replay",
    "fork",
    "areplay",
    "afork",
    "diff",
    "ReplayResult",
    "RunDiff",
    # search
    "optimize",
    "search",
    "asearch",
    "SearchResult",
    "SearchSettings",
    "Budget",
    "Spent",
    "Space",
    "Node",
    "Candidate",
    "Environment",
    "Optimizer",
    "TreeLog",
    "Greedy",
    "BestOfN",
    "RRO",
    "MCTS",
    "SEAgent",
    # policies and rewards
    "Policy",
    "LiteLLMPolicy",
    "ChatModelPolicy",
    "RolloutValue",
    "Scorer",
    "as_reward",
    "LocalRewardModel",
    "LLMJudge",
    "EnvReward",
    "Weighted",
    "RewardItem",
    "reward",
    "export",
    "sft_dataset",
    "dpo_dataset",
    "prm_dataset",
    "write_dataset",
    "export_spans",
    # learning from search
    "train_policy",
    "evolve",
    "with_policy",
    "load_policy",
    "TrainablePolicy",
    "trainable_policy",
    # errors
    "TrajgraphError",
    "StoreError",
    "NotAStoreError",
    "SchemaTooNewError",
    "RunNotFoundError",
    "ReplayError",
    "ForkError",
    "BudgetError",
    "ConfigError",
    "InputError",
    "RewardModelError",
]
