"""The named parts a bench is built from: its suite, policy and reward, by name.

Apart from the `bench` command (trajgraph/cli/bench.py) because its second search
process (trajgraph/cli/_shard.py) rebuilds a run from the same names, and neither
module may import the other.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from trajgraph._internal.plugins import load_plugin
from trajgraph.errors import ConfigError

SUITES = "trajgraph.suites"  # entry-point groups (pyproject.toml)
POLICIES = "trajgraph.policies"
REWARDS = ("none", "env", "rollout", "rm")

console = Console(stderr=True)


def load_suite(name: str) -> Any:
    return load_plugin(SUITES, name)()


def policy_factory(name: str, *, model: str | None, skill: float, seed: int) -> tuple[Any, str]:
    """policy_for(task) and a label that says what the policy is (simulated ones say so)."""
    if model:
        from trajgraph.search.policy import LiteLLMPolicy

        if model.startswith("smollm2/"):  # the offline in-process provider, through the same litellm path
            from trajgraph.policies import register_smollm2

            register_smollm2()
        llm = LiteLLMPolicy(model, temperature=0.8, max_tokens=24)

        def for_task(task: Any) -> Any:
            return _LLMNode(llm)

        return for_task, f"litellm:{model}"
    for_task = load_plugin(POLICIES, name)(seed=seed, skill=skill)
    shared = getattr(for_task, "policy", None)
    if shared is not None:
        _warm(shared, name)
    return for_task, str(getattr(for_task, "label", name))


def _warm(policy: Any, name: str) -> Any:
    """Load the model once, before concurrent searches race to import it."""
    try:  # transformers' own weight-loading bar would interleave with ours
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    with console.status(f"loading the {name} policy"):
        policy({"task": "open the door", "observation": "A door.", "actions": ["open door", "wait"], "history": []})
    return policy


class _LLMNode:
    """An env-loop decision node backed by a litellm policy (its own propose is batched)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.name = policy.name

    async def propose(self, state: dict, k: int) -> list:
        return await self.policy.propose(state, k)

    async def __call__(self, state: dict) -> dict:
        return (await self.policy.propose(state, 1))[0]


def make_reward(kind: str, *, train: Any = None) -> Any:
    if kind not in REWARDS:
        raise ConfigError(f"unknown reward {kind!r}; choose from {', '.join(REWARDS)}")
    if kind == "none":
        return None
    if kind == "env":
        return lambda state: float(state.get("score") or 0.0) / float(state.get("max_score") or 1.0)
    if kind == "rollout":
        from trajgraph.search.rollout_value import RolloutValue

        return RolloutValue(n=2)
    return train()
