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
import sys
import types
from typing import TYPE_CHECKING, Any

from trajgraph.errors import (
    BudgetError,
    ConfigError,
    ForkError,
    GraphError,
    InputError,
    NotAStoreError,
    ReplayError,
    RewardModelError,
    RunNotFoundError,
    SchemaTooNewError,
    StoreError,
    TrajgraphError,
)

__version__ = "0.1.0"

# Every public name is imported on first use, so `import trajgraph` (and with it every
# `trajgraph` command) loads neither LangGraph, torch nor an environment package until
# a command needs one. name -> module that defines it
_LAZY = {
    **dict.fromkeys(("Run", "Step", "ModelCall", "SearchNode", "PreferencePair", "Trajectory"), "trajgraph.trajectory"),
    "Store": "trajgraph.store",
    "record": "trajgraph.recording",
    **dict.fromkeys(("replay", "fork", "areplay", "afork", "diff", "ReplayResult", "RunDiff"), "trajgraph.replay"),
    **dict.fromkeys(("optimize", "search", "asearch", "SearchResult", "SearchSettings"), "trajgraph.search.optimize"),
    **dict.fromkeys(("Budget", "Spent"), "trajgraph.search.budget"),
    **dict.fromkeys(("Space",), "trajgraph.search.space"),
    **dict.fromkeys(("Node", "Candidate", "Environment", "TreeLog"), "trajgraph.search.tree"),
    **dict.fromkeys(("Optimizer", "Greedy", "BestOfN", "RRO", "MCTS", "SEAgent", "Apprentice"), "trajgraph.search.optimizers"),
    **dict.fromkeys(("Policy", "LiteLLMPolicy", "ChatModelPolicy"), "trajgraph.search.policy"),
    "RolloutValue": "trajgraph.search.rollout_value",
    **dict.fromkeys(("Scorer", "as_reward"), "trajgraph.search.scoring"),
    **dict.fromkeys(("LocalRewardModel", "LLMJudge", "EnvReward", "Weighted", "RewardItem"), "trajgraph.reward"),
    "reward": "trajgraph.reward",
    "export": "trajgraph.export",
    **dict.fromkeys(("sft_dataset", "dpo_dataset", "prm_dataset", "write_dataset"), "trajgraph.export"),
    "export_spans": "trajgraph.export.otel",
    **dict.fromkeys(("train_policy", "evolve", "with_policy", "load_policy"), "trajgraph.learn"),
    **dict.fromkeys(("TrainablePolicy", "trainable_policy"), "trajgraph.policies.head"),
}

# tg.search and tg.replay are functions named like the packages that define them: importing
# the package (trajgraph.search.optimize, say) must not replace the function on this module.
_FUNCTIONS_NAMED_LIKE_PACKAGES = frozenset({"search", "replay"})


class _Trajgraph(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTIONS_NAMED_LIKE_PACKAGES and isinstance(value, types.ModuleType):
            return  # the package stays in sys.modules; the name keeps meaning the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Trajgraph


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trajgraph' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name in ("reward", "export") else getattr(mod, name)  # two names are namespaces
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported eagerly
    from trajgraph import export, reward
    from trajgraph.export import dpo_dataset, prm_dataset, sft_dataset, write_dataset
    from trajgraph.export.otel import export_spans
    from trajgraph.learn import load_policy, train_policy, with_policy
    from trajgraph.learn.evolve import evolve
    from trajgraph.policies.head import TrainablePolicy, trainable_policy
    from trajgraph.recording import record
    from trajgraph.replay import ReplayResult, RunDiff, afork, areplay, diff, fork, replay
    from trajgraph.reward import EnvReward, LLMJudge, LocalRewardModel, RewardItem, Weighted
    from trajgraph.search.budget import Budget, Spent
    from trajgraph.search.optimize import SearchResult, SearchSettings, asearch, optimize, search
    from trajgraph.search.optimizers import MCTS, RRO, Apprentice, BestOfN, Greedy, Optimizer, SEAgent
    from trajgraph.search.policy import ChatModelPolicy, LiteLLMPolicy, Policy
    from trajgraph.search.rollout_value import RolloutValue
    from trajgraph.search.scoring import Scorer, as_reward
    from trajgraph.search.space import Space
    from trajgraph.search.tree import Candidate, Environment, Node, TreeLog
    from trajgraph.store import Store
    from trajgraph.trajectory import ModelCall, PreferencePair, Run, SearchNode, Step, Trajectory

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
    "Apprentice",
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
    "GraphError",
    "InputError",
    "RewardModelError",
]
