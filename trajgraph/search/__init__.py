"""Search over what an agent could have done, at its decision node.

- `space.py`: the decision-point space every optimizer is written against
  (`root`, `propose`, `expand`, `score`); `tree.py`: its node and candidate types;
- `optimizers/`: Greedy, BestOfN, RRO, MCTS, SEAgent (one file each) and the
  `Optimizer` protocol; `TreeLog` (tree.py) is what they record beyond the tree;
- `scoring.py`: `as_reward`, any reward (model, judge, rollouts, function) as one scorer;
- `budget.py`: policy calls, tokens, wall time, environment steps;
- `policy.py`: where candidates come from (litellm, LangChain chat models, scripted);
- `rollout_value.py`: Monte Carlo process reward;
- `optimize.py`: `search`/`asearch` and `optimize` (an optimized agent as a graph);
- `_write.py`: a finished search written to the store; `_candidates.py`: checks
  on a proposed action.
"""

from trajgraph.search.budget import Budget, Spent
from trajgraph.search.optimize import SearchResult, SearchSettings, asearch, optimize, search
from trajgraph.search.optimizers import MCTS, RRO, BestOfN, Greedy, Optimizer, SEAgent
from trajgraph.search.policy import ChatModelPolicy, LiteLLMPolicy, Policy
from trajgraph.search.rollout_value import RolloutValue
from trajgraph.search.scoring import Scorer, as_reward
from trajgraph.search.space import Space
from trajgraph.search.tree import Candidate, Environment, Node, TreeLog

__all__ = [
    "Budget", "Spent", "SearchResult", "asearch", "optimize", "search", "MCTS", "RRO", "BestOfN",
    "Greedy", "Optimizer", "SEAgent", "ChatModelPolicy", "LiteLLMPolicy", "Policy", "RolloutValue",
    "Space", "Candidate", "Environment", "Node", "TreeLog", "SearchSettings", "Scorer", "as_reward",
]
