"""The environment-loop contract: the state every env-loop agent shares, its one graph
builder, and the task/suite protocols that benchmarks, search and learning read.

- `EnvState`, `env_loop_graph`, `env_loop`, `oracle_policy` (`loop.py`): policy -> env ->
  (policy | END), with an optional reset node; decision node "policy".
- `Task`, `Suite`, `TaskSpec` and the split helpers (`task.py`): what a task suite yields.

Adapters (TextWorld, gym toy-text, SQL) and the test kit build on it; it imports none of them.
"""

from trajgraph.envloop.loop import EnvState, Node, env_loop, env_loop_graph, oracle_policy
from trajgraph.envloop.statemap import StateMap
from trajgraph.envloop.task import SPLITS, Suite, Task, TaskSpec, check_split, sample_pool, seed_pool, split_pool

__all__ = ["StateMap", "EnvState", "Node", "env_loop", "env_loop_graph", "oracle_policy", "Task", "Suite", "TaskSpec", "SPLITS",
           "check_split", "sample_pool", "seed_pool", "split_pool"]
