"""Offline policy speed: SmolLM2 load (GGUF vs cached safetensors), generation tokens/s,
command scoring, MiniLM ranking, and litellm's overhead on the in-process provider.

The issue's reference (this CPU, 2 cores): GGUF load 17-20 s, cached reload ~0.1 s,
about 17 tokens/s generation. The machine's load average is recorded with the numbers:
on a shared CPU, torch timings move by several x.
Run: python benchmarks/policy_speed.py [--states 20] [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _table import emit

import trajgraph.testing  # noqa: F401  (the test kit applies the offline defaults; `import trajgraph` changes nothing)
from trajgraph.policies import (  # before torch: sets OMP_WAIT_POLICY
    MiniLM,
    SimulatedPolicy,
    SmolLM2,
    build_messages,
    minilm_policy,
    register_smollm2,
)
from trajgraph.testing.choice_task import choice_states


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Median seconds of `repeat` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=20, help="choice_task states for the ranking rows")
    ap.add_argument("--tokens", type=int, default=64, help="max tokens per generation")
    args = ap.parse_args()
    import torch

    load_before = os.getloadavg()[0]
    rows: list[dict] = []

    def row(what: str, value: float, unit: str, note: str = "") -> None:
        rows.append({"measure": what, "value": round(value, 3), "unit": unit, "note": note})

    # -- loading: a fresh cache forces the GGUF conversion; then reloads read safetensors
    with tempfile.TemporaryDirectory() as cache:
        first = SmolLM2.load(cache)
        row("smollm2 load, GGUF (first time)", first.load_seconds, "s", "de-quantize + write safetensors cache")
        del first
        seconds, model = timed(lambda: SmolLM2.load(cache), repeat=3)
        row("smollm2 load, cached safetensors", seconds, "s", "median of 3")
    # keep `model` (its weights are in memory; the temporary folder is gone)

    # -- generation: one reply, then n=4 replies from one batched generate
    messages = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]
    model.generate(messages, n=1, temperature=0, max_tokens=4)  # warm-up
    seconds, (completions, prompt_tokens) = timed(lambda: model.generate(messages, n=1, temperature=0, max_tokens=args.tokens), repeat=3)
    written = len(completions[0].token_ids)
    row("generate n=1", written / seconds, "tokens/s", f"{written} tokens after a {prompt_tokens}-token prompt")
    seconds, (completions, _) = timed(lambda: model.generate(messages, n=4, temperature=0.8, max_tokens=args.tokens, seed=0), repeat=2)
    written = sum(len(c.token_ids) for c in completions)
    row("generate n=4 (batched)", written / seconds, "tokens/s", "all four replies together")

    # -- litellm overhead on the in-process provider: the same short request both ways
    import litellm

    name = register_smollm2(model)
    short = [{"role": "user", "content": "Say hi."}]
    litellm.completion(model=name, messages=short, max_tokens=8, temperature=0)  # warm-up
    direct, _ = timed(lambda: model.generate(short, n=1, temperature=0, max_tokens=8), repeat=5)
    via, _ = timed(lambda: litellm.completion(model=name, messages=short, max_tokens=8, temperature=0), repeat=5)
    row("litellm.completion overhead", (via - direct) * 1000, "ms/call", f"direct {direct * 1000:.0f} ms, via litellm {via * 1000:.0f} ms")

    # -- scoring admissible commands by log-probability (the rank policy's one step)
    states = choice_states(args.states, seed=0)
    prompts = [build_messages(s) for s in states]
    model.score_replies(prompts[0], states[0]["actions"])  # warm-up
    start = time.perf_counter()
    for p, s in zip(prompts, states):
        model.score_replies(p, s["actions"])
    seconds = time.perf_counter() - start
    commands = sum(len(s["actions"]) for s in states)
    mean_prompt = statistics.mean(len(model.chat_ids(p)) for p in prompts)
    row("smollm2 rank: commands scored", commands / seconds, "commands/s", f"{len(states)} states, ~{mean_prompt:.0f}-token prompts")
    row("smollm2 rank: policy steps", len(states) / seconds, "steps/s", "one prompt pass + one batched pass per step")

    # -- MiniLM ranking: cold (every string new) and warm (embeddings cached)
    start = time.perf_counter()
    encoder = MiniLM()
    row("minilm load", time.perf_counter() - start, "s")
    many = choice_states(10 * args.states, seed=1)
    policy = minilm_policy(temperature=0.1, encoder=encoder)
    start = time.perf_counter()
    for s in many:
        policy(s)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    for s in many:
        policy(s)
    warm = time.perf_counter() - start
    row("minilm rank: policy steps (new strings)", len(many) / cold, "steps/s", f"{policy.stats.tokens} tokens encoded")
    row("minilm rank: policy steps (cached)", len(many) / warm, "steps/s", "same states again")

    oracle = SimulatedPolicy(0.6, lambda s: s["right"])
    seconds, _ = timed(lambda: [oracle(s) for s in many])
    row("simulated policy steps", len(many) / seconds, "steps/s")

    load_after = os.getloadavg()[0]
    emit("policy_speed", "Offline policy speed (CPU)", rows,
         {"torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
          "load_average_1min": [load_before, load_after]})
    print(f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"1-min load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
