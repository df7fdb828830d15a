"""Search over an agent's decision points. Each optimizer cites its paper."""

from trajgraph.optimizers.base import Optimizer
from trajgraph.optimizers.best_of_n import BestOfN
from trajgraph.optimizers.greedy import Greedy
from trajgraph.optimizers.mcts import MCTS
from trajgraph.optimizers.rro import RRO
from trajgraph.optimizers.se_agent import SEAgent

BY_NAME: dict[str, type] = {cls.name: cls for cls in (Greedy, BestOfN, RRO, MCTS, SEAgent)}  # "rro" -> RRO, ...

__all__ = ["BY_NAME", "Optimizer", "Greedy", "BestOfN", "RRO", "MCTS", "SEAgent"]
