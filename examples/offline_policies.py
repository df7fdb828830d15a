"""Offline policies that are real models: how often does each pick the right command?

1. SmolLM2-135M-Instruct answers through litellm, as an in-process provider.
2. On `choice_task` (one decision, one clearly right command among 6-9), each policy's
   accuracy against random.
3. On generated TextWorld games (tw-simple; needs the `textworld` extra): agreement
   with the walkthrough at each of its steps, and the score of whole episodes played
   through the env-loop graph, against a uniformly random policy.

No network, no API key. Run: python examples/offline_policies.py [--states 60] [--games 4]
(about 15 minutes on 2 cores with SmolLM2; --no-smollm: under a minute).

Measured here (2 shared cores): on tw-simple walkthrough steps MiniLM greedy agrees 79%
(random 7%), SmolLM2 ranking 16%, SmolLM2 generating 7%; whole episodes: MiniLM
mean reward 0.76-0.82 (4-5 of 10 won), SmolLM2 ranking 0.30 and random 0.30-0.33 (none won).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import trajgraph.testing  # noqa: F401  (the test kit applies the offline defaults; `import trajgraph` changes nothing)
from trajgraph.policies import PolicyStats, SimulatedPolicy, minilm_policy, register_smollm2, smollm2_policy
from trajgraph.testing.choice_task import choice_states


class RandomPolicy:
    """The baseline: a uniformly random admissible command."""

    def __init__(self, seed: int = 0) -> None:
        self.rng, self.name, self.stats = random.Random(seed), "random", PolicyStats()

    def __call__(self, state: dict[str, Any]) -> dict[str, str]:
        return {"action": self.rng.choice(list(state["actions"]))}


def policies(smollm: bool) -> list[Any]:
    out = [RandomPolicy(), minilm_policy(temperature=0), minilm_policy(temperature=0.1, seed=0)]
    if smollm:
        out += [smollm2_policy("rank", temperature=0), smollm2_policy("generate", temperature=0, max_tokens=16)]
    return out


def choice_task(n: int, smollm: bool) -> None:
    states = choice_states(n, seed=123)
    print(f"\nchoice_task: {n} decisions, random picks right {statistics.mean(1 / len(s['actions']) for s in states):.0%} in expectation")
    for policy in policies(smollm):
        start = time.perf_counter()
        right = sum(policy(s)["action"] == s["right"] for s in states)
        invalid = f", invalid outputs mapped {policy.stats.invalid_outputs}/{n}" if policy.stats.invalid_outputs else ""
        print(f"  {policy.name:28s} {right / n:5.0%} right  {(time.perf_counter() - start) / n * 1000:7.0f} ms/step{invalid}")


def textworld(games: int, smollm: bool, episodes: bool) -> None:
    try:
        from trajgraph.adapters.textworld_env import TextWorldEnv, TextWorldGraph, textworld_task
    except ImportError as exc:
        print(f"\n(TextWorld skipped: {exc})")
        return
    tasks = [textworld_task(seed=s) for s in range(1, games + 1)]
    print(f"\nTextWorld tw-simple, {games} games: per-step agreement with the walkthrough")
    for policy in [*policies(smollm), SimulatedPolicy(0.6, oracle=lambda s: s["best"])]:
        right = total = 0
        chance: list[float] = []
        start = time.perf_counter()
        for task in tasks:
            assert isinstance(task.make_graph, TextWorldGraph) and task.oracle is not None
            env = TextWorldEnv(task.make_graph.gamefile, fork="replay")
            history: list[dict[str, Any]]
            frame, history = env.reset(), []
            oracle = task.oracle
            for _ in range(task.max_steps):
                if frame.done or not frame.admissible_commands:
                    break
                state = {"task": frame.objective, "observation": frame.observation, "actions": list(frame.admissible_commands),
                         "history": history, "policy_commands": list(frame.policy_commands)}
                best = state["best"] = oracle(state)
                right += policy(state)["action"] == best
                total += 1
                chance.append(1 / len(frame.admissible_commands))
                frame = env.step(best)
                history = [*history, {"action": best, "observation": frame.observation}]
            env.close()
        print(f"  {policy.name:28s} {right / total:5.0%} of {total} steps  (random {statistics.mean(chance):.0%})"
              f"  {(time.perf_counter() - start) / total * 1000:7.0f} ms/step")
    if not episodes:
        return
    print(f"\nTextWorld tw-simple, {games} games: whole episodes through the graph (reward = score / max score)")
    for policy in policies(smollm)[:4] if smollm else policies(False):
        rewards, steps, start = [], [], time.perf_counter()
        for task in tasks:
            graph, env = task.make_graph(policy)
            final = graph.invoke(task.input, {"recursion_limit": 4 * task.max_steps + 10})
            env.close()
            rewards.append(float(final.get("reward") or 0.0))
            steps.append(len(final.get("history") or []))
        won = sum(r >= 1.0 for r in rewards)
        print(f"  {policy.name:28s} mean reward {statistics.mean(rewards):.2f}, won {won}/{games}, "
              f"{statistics.mean(steps):.0f} steps/episode, {time.perf_counter() - start:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description="offline policies: accuracy vs random")
    ap.add_argument("--states", type=int, default=60)
    ap.add_argument("--games", type=int, default=4)
    ap.add_argument("--no-smollm", action="store_true", help="skip SmolLM2 (the slow one)")
    ap.add_argument("--no-episodes", action="store_true")
    args = ap.parse_args()

    if not args.no_smollm:
        import litellm

        name = register_smollm2()
        reply = litellm.completion(model=name, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8, temperature=0)
        print(f"litellm.completion(model={name!r}) -> {reply.choices[0].message.content!r} ({reply.usage.total_tokens} tokens)")
    choice_task(args.states, not args.no_smollm)
    textworld(args.games, not args.no_smollm, not args.no_episodes)


if __name__ == "__main__":
    main()
