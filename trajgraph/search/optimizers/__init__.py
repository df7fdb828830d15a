"""Search over an agent's decision points. Each optimizer cites its paper."""

from trajgraph.search.optimizers.apprentice import Apprentice
from trajgraph.search.optimizers.base import Optimizer
from trajgraph.search.optimizers.best_of_n import BestOfN
from trajgraph.search.optimizers.greedy import Greedy
from trajgraph.search.optimizers.mcts import MCTS
from trajgraph.search.optimizers.rro import RRO
from trajgraph.search.optimizers.se_agent import SEAgent

BY_NAME: dict[str, type] = {cls.name: cls for cls in (Greedy, BestOfN, RRO, MCTS, SEAgent, Apprentice)}  # "rro" -> RRO, ...

__all__ = ["BY_NAME", "Optimizer", "Greedy", "BestOfN", "RRO", "MCTS", "SEAgent", "Apprentice"]
