"""Replay a recorded run from its cassette, fork it at a step, diff two runs.

- `cassette.py`: `replay` and `fork` (recorded node outputs answer instead of the nodes);
- `diff.py`: `diff`, step by step, and where two runs first diverge.
"""

from trajgraph.replay.cassette import ReplayResult, afork, areplay, fork, load_graph, replay
from trajgraph.replay.diff import Divergence, RunDiff, StepDiff, diff

__all__ = ["replay", "fork", "areplay", "afork", "diff", "load_graph", "ReplayResult", "Divergence", "RunDiff", "StepDiff"]
