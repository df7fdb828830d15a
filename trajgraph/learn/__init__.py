"""Learning from search: train a policy on a store's trajectories and pairs, put it back
into the graph, and repeat in rounds (search -> train -> evaluate).

- `train_policy(store, out, method="head"|"sft"|"dpo"|"sft+dpo")`: the small offline
  policy (MiniLM + a scoring head) or a language model through TRL.
- `load_policy(path)`: a trained folder back as a policy (`propose(state, k)`).
- `with_policy(graph, policy, decision_node=...)`: the user's graph with its
  decision node served by that policy; record it, optimize it, search with it.
- `generate_tasks`, `NoveltyPolicy`, `collect`, `dedupe`, `coverage_of`: trajectory
  synthesis for coverage (new tasks, novelty-seeking collection, near-duplicate removal).
- `search_targets(store)`: the search's improved action distribution at every node it
  expanded (values, counts, advantages), what the head is fit to; `lm_rows` /
  `write_lm_rows`: the same as weighted SFT rows and DPO pairs for language models.
- `evolve(train, test, ...)`: rounds of search on the training split, training, promotion
  on a held-out validation split, evaluation on the disjoint test split; resumable.

Heavy dependencies (torch, transformers, trl, peft) load where they are used.
"""

from trajgraph.learn.data import Decision, NoTrainingDataError, Preference, decisions, mc_preferences, preferences
from trajgraph.learn.evolve import EvolveReport, RoundResult, evolve
from trajgraph.learn.graph import load_policy, policy_version, with_policy
from trajgraph.learn.synthesis import NoveltyPolicy, Trajectory, collect, coverage_of, dedupe, generate_tasks
from trajgraph.learn.targets import SoftTarget, lm_rows, search_targets, write_lm_rows
from trajgraph.learn.train import METHODS, TrainResult, train_policy

__all__ = ["train_policy", "TrainResult", "METHODS", "evolve", "EvolveReport", "RoundResult", "with_policy", "load_policy",
           "policy_version", "NoveltyPolicy", "Trajectory", "dedupe", "generate_tasks", "collect", "coverage_of", "Decision", "Preference", "decisions", "preferences", "mc_preferences", "NoTrainingDataError",
           "SoftTarget", "search_targets", "lm_rows", "write_lm_rows"]
