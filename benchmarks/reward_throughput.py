"""Reward model throughput: items scored per second, by sequence length, batch size,
number of concurrent callers and numeric path (CPU fp32 / bf16 / int8; CUDA bf16).

Every item is long enough to fill the model's window, so each one is exactly
`tokens` tokens after (left) truncation; timing goes through the public
`LocalRewardModel.score`, tokenization and the batching queue included. With 8
callers, eight threads call `score(batch)` at once and the queue coalesces them.

On CUDA the table also shows the share of the card's bf16 matmul rate (measured
here, 8192^3 matmuls) that the encoder reaches, counting 2 FLOP per weight per
token plus attention. Targets (issue 4): >= 40 items/s at ~100 tokens on the
2-core CPU; >= 50,000 items/s at 128 tokens on an H100.

Run: python benchmarks/reward_throughput.py [--model rm/] [--seconds 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _table import emit

from trajgraph.reward import LocalRewardModel, RewardItem, init_model

WORDS = "open the wooden door take the brass key go north look around read the note climb the ladder".split()


def make_items(n: int, tokens: int) -> list[RewardItem]:
    """Distinct items a little longer than `tokens`, so left truncation makes each exactly `tokens` long.

    Not much longer: tokenizing is part of what is timed, and a search's items are short.
    """
    out = []
    n_turns = tokens // 25 + 1  # a turn renders to about 25 tokens
    for i in range(n):
        turns = tuple(
            (
                f"{WORDS[(i + k) % len(WORDS)]} {WORDS[(i * k) % len(WORDS)]}",
                f"room {i}.{k}: " + " ".join(WORDS[(k * j + i) % len(WORDS)] for j in range(8)),
            )
            for k in range(n_turns)
        )
        out.append(RewardItem(f"task {i}: reach the tower", turns, WORDS[i % len(WORDS)]))
    return out


def measure(rm: LocalRewardModel, batch: int, callers: int, seconds: float, pool: list[RewardItem]) -> float:
    """Items per second over a window of `seconds` (after one warm-up call per caller)."""
    batches = [[pool[(c * batch + j) % len(pool)] for j in range(batch)] for c in range(callers)]
    for b in batches:
        rm.score(b)
    done = [0] * callers
    stop = time.perf_counter() + seconds
    start = threading.Barrier(callers + 1)

    def caller(c: int) -> None:
        start.wait()
        while time.perf_counter() < stop:
            rm.score(batches[c])
            done[c] += len(batches[c])

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def flops_per_item(rm: LocalRewardModel, tokens: int) -> float:
    """Forward FLOPs of one item: 2 per weight per token (embeddings excluded) + attention scores and mixing."""
    cfg = rm.config["backbone"]
    hidden, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    inner = int(cfg.get("intermediate_size", 4 * hidden))
    per_layer_weights = 4 * hidden * hidden + 2 * hidden * inner
    return 2.0 * tokens * layers * per_layer_weights + 4.0 * layers * tokens * tokens * hidden


def cuda_bf16_peak() -> float:
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2.0 * n**3 * reps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, help="reward model directory (default: an untrained MiniLM-L6 model)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring window per cell")
    parser.add_argument("--quick", action="store_true", help="fewer cells (for a smoke run)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import torch

    tmp = tempfile.TemporaryDirectory()
    model_dir = args.model or init_model(Path(tmp.name) / "rm", max_length=256)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if cuda:
        lengths, batches, modes = [64, 128, 256], [32, 256, 1024, 4096], [None]
    else:
        lengths, batches, modes = [64, 100, 128, 256], [1, 8, 32], [None, "bf16", "int8"]
    if args.quick:
        lengths, batches = [100 if not cuda else 128], batches[-2:]
    peak = cuda_bf16_peak() if cuda else None
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for tokens in lengths:
        for fast in modes:
            bs = max(batches) if cuda else 32
            rm = LocalRewardModel(model_dir, device="cuda" if cuda else "cpu", fast=fast, max_length=tokens, batch_size=bs)
            pool = make_items(8192 if cuda else 512, tokens)
            assert all(len(rm.tokens(item)) == tokens for item in pool[:50])
            for batch in batches:
                for callers in (1, 8):
                    rate = measure(rm, batch, callers, args.seconds, pool)
                    row: dict[str, Any] = {
                        "device": "cuda" if cuda else "cpu",
                        "path": "bf16" if cuda else (fast or "fp32"),
                        "tokens": tokens,
                        "batch": batch,
                        "callers": callers,
                        "items_per_s": round(rate, 1),
                    }
                    if peak:
                        row["share_of_bf16_peak"] = round(rate * flops_per_item(rm, tokens) / peak, 3)
                    rows.append(row)
                    print(row, flush=True)
    load_after = os.getloadavg()
    best = {}
    for r in rows:
        key = (r["path"], r["tokens"])
        best[key] = max(best.get(key, 0.0), r["items_per_s"])
    extra = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": _cpu_bf16(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "bf16_matmul_peak_tflops": round(peak / 1e12, 1) if peak else None,
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "best_items_per_s": {f"{p}@{t}": v for (p, t), v in best.items()},
        "note": "CPU cells are noisy when other processes share the 2 cores; see load_average_before_after",
        "median_items_per_s": round(statistics.median(r["items_per_s"] for r in rows), 1),
    }
    emit("reward_throughput", "Reward model throughput (items/s)", rows, extra)
    print({k: v for k, v in extra.items() if k != "note"})


def _cpu_bf16() -> bool:
    from trajgraph.reward._net import cpu_has_bf16

    return cpu_has_bf16()


if __name__ == "__main__":
    main()
