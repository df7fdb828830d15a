"""Generate a TextWorld game, play it through the env-loop graph, fork it, and time everything.

    python examples/textworld_env.py [--seed 12] [--cache DIR]

Prints: generation time (first game in the process pays TextWorld's import and
knowledge-base load), env step time, engine snapshot/restore (µs) against
`env.copy()` and a replay from reset, and the gym toy-text step for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from trajgraph.adapters.gym_toytext import ToyTextGraph, frozenlake_task
from trajgraph.adapters.textworld_env import TextWorldEnv, TextWorldGraph, make_game, textworld_task


def timeit(fn: Callable[[], object], n: int) -> float:
    """Median seconds per call over n calls (medians resist a busy machine)."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--cache", default=None, help="game cache (default: a fresh temporary directory)")
    args = ap.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="tw-")
    rows: list[tuple[str, str]] = []

    t0 = time.perf_counter()
    task = textworld_task(args.seed, cache=cache)
    rows.append(("first game: generate + compile + load (s)", f"{time.perf_counter() - t0:.2f}"))
    t0 = time.perf_counter()
    make_game(args.seed + 1, cache=cache)
    rows.append(("next game: generate + compile (s)", f"{time.perf_counter() - t0:.2f}"))
    t0 = time.perf_counter()
    make_game(args.seed, cache=cache)
    rows.append(("cached game lookup (ms)", f"{(time.perf_counter() - t0) * 1e3:.2f}"))

    # play the walkthrough through the graph: the task's oracle is the walkthrough
    assert task.oracle is not None and isinstance(task.make_graph, TextWorldGraph)
    oracle = task.oracle
    graph, env = task.make_graph(lambda state: {"action": oracle(state)})
    t0 = time.perf_counter()
    out = graph.invoke(task.input, {"recursion_limit": 4 * task.max_steps})
    rows.append((f"episode through the graph ({len(out['history'])} steps, outcome {task.outcome(out)}) (ms)",
                 f"{(time.perf_counter() - t0) * 1e3:.1f}"))

    env = TextWorldEnv(task.make_graph.gamefile)
    env.reset()
    walk = env.walkthrough

    steps = []
    for _ in range(10):
        env.reset()
        for c in walk:
            t0 = time.perf_counter()
            env.step(c)
            steps.append(time.perf_counter() - t0)
    rows.append(("env step, with admissible + winning-policy tracking (ms)", f"{statistics.median(steps) * 1e3:.2f}"))
    env.reset()
    for c in walk[: len(walk) // 2]:
        env.step(c)
    snap = env.snapshot()
    rows.append(("snapshot (µs)", f"{timeit(env.snapshot, 2000) * 1e6:.1f}"))
    rows.append(("restore (µs)", f"{timeit(lambda: env.restore(snap), 2000) * 1e6:.1f}"))
    nxt = walk[len(walk) // 2]

    def restore_and_step() -> None:
        env.restore(snap)
        env.step(nxt)

    rows.append(("restore + step, incl. copy-on-write of the tracker (ms)",
                 f"{timeit(restore_and_step, 200) * 1e3:.2f}"))
    rows.append(("textworld env.copy() (ms)", f"{timeit(lambda: env._env.copy(), 20) * 1e3:.1f}"))
    replay = TextWorldEnv(task.make_graph.gamefile, fork="replay")
    replay.reset()
    for c in walk[: len(walk) // 2]:
        replay.step(c)
    rsnap = replay.snapshot()
    rows.append((f"restore by replay from reset ({len(walk) // 2} commands) (ms)",
                 f"{timeit(lambda: replay.restore(rsnap), 20) * 1e3:.1f}"))

    import gymnasium as gym

    lake = frozenlake_task(8)
    toy = lake.make_graph
    assert isinstance(toy, ToyTextGraph)
    state = {**lake.input, "action": "right"}
    rows.append(("gym toy-text step in the graph's env node (µs)", f"{timeit(lambda: toy.env_node(state), 5000) * 1e6:.1f}"))
    genv = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=False)
    genv.reset(seed=0)
    rows.append(("gymnasium FrozenLake env.step (µs)", f"{timeit(lambda: genv.step(0), 5000) * 1e6:.1f}"))  # left: a wall

    width = max(len(k) for k, _ in rows)
    print(f"TextWorld game {task.id} ({len(walk)}-step walkthrough), cache {cache}")
    for k, v in rows:
        print(f"  {k:<{width}}  {v:>8}")


if __name__ == "__main__":
    main()
