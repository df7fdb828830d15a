"""Search over an agent's decision points. Each optimizer cites its paper."""

from trajgraph.optimizers.base import Optimizer
from trajgraph.optimizers.best_of_n import BestOfN
from trajgraph.optimizers.greedy import Greedy
from trajgraph.optimizers.mcts import MCTS
from trajgraph.optimizers.rro import RRO
from trajgraph.optimizers.se_agent import SEAgent

__all__ = ["Optimizer", "Greedy", "BestOfN", "RRO", "MCTS", "SEAgent"]
