"""Reward model throughput: items scored per second, by sequence length, batch size,
number of concurrent callers and numeric path (CPU fp32 / bf16 / int8 / ONNX Runtime
int8, and what `fast="auto"` picked; CUDA bf16).

Every item is long enough to fill the model's window, so each one is exactly
`tokens` tokens after (left) truncation; timing goes through the public
`LocalRewardModel.score`, tokenization and the batching queue included. With 8
callers, eight threads call `score(batch)` at once and the queue coalesces them.

The paths of one cell are timed in turns, `--repeats` rounds (the order rotates
each round), and each cell reports the median and best round: on a shared
machine the load changes from second to second, and turns spread it over all
paths alike. The CPU's model and flags, torch's CPU capability and the load
average are printed and saved with every table. `rho` is each path's Spearman
rank correlation with fp32 over the item pool (what `auto` checks on its probe).

On CUDA the table also shows the share of the card's bf16 matmul rate (measured
here, 8192^3 matmuls) that the encoder reaches, counting 2 FLOP per weight per
token plus attention. Targets (issue 4): >= 40 items/s at ~100 tokens on the
2-core CPU; >= 50,000 items/s at 128 tokens on an H100.

Run: python benchmarks/reward_throughput.py [--model rm/] [--seconds 1.5] [--repeats 3] [--quick]
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


CPU_PATHS = ("fp32", "bf16", "int8", "onnx-fp32", "onnx-int8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, help="reward model directory (default: an untrained MiniLM-L6 model)")
    parser.add_argument("--seconds", type=float, default=1.5, help="measuring window per cell and round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per cell (paths take turns)")
    parser.add_argument("--quick", action="store_true", help="only the issue's cell: batch 64 x 100 tokens, one caller")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import torch

    from trajgraph.reward import _paths
    from trajgraph.reward.metrics import spearman

    tmp = tempfile.TemporaryDirectory()
    os.environ.setdefault("TRAJGRAPH_CACHE", str(Path(tmp.name) / "cache"))  # the ONNX export, thrown away after
    model_dir = args.model or init_model(Path(tmp.name) / "rm", max_length=256)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    cpu = _paths.cpu_info()
    print(f"CPU: {cpu['cpu']}; flags: {' '.join(cpu['flags'])}; torch {torch.__version__} capability {cpu['torch_capability']}, "
          f"{cpu['threads']} threads; load average {os.getloadavg()[0]:.2f}", flush=True)
    modes: list[str | None]
    if cuda:
        cells, modes = [(t, b, 1) for t in (64, 128, 256) for b in (32, 256, 1024, 4096)], [None]
    elif args.quick:
        cells, modes = [(100, 64, 1)], [*CPU_PATHS, "auto"]
    else:
        cells = [(t, b, c) for t in (64, 100, 128, 256) for b, c in ((1, 1), (8, 1), (8, 8), (32, 1), (64, 1))]
        modes = [*CPU_PATHS, "auto"]
    peak = cuda_bf16_peak() if cuda else None
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    picks: dict[int, str] = {}
    for tokens in sorted({t for t, _, _ in cells}):
        bs = 4096 if cuda else 64
        models = {}
        for fast in modes:
            name = "bf16" if cuda else (fast or "fp32")
            t0 = time.perf_counter()
            models[name] = LocalRewardModel(model_dir, device="cuda" if cuda else "cpu", fast=None if fast == "fp32" else fast,
                                            max_length=tokens, batch_size=bs,
                                            cache_size=0)  # the model's work, not its score cache (the items repeat)
            if name == "auto":
                probe = models[name].probe
                assert probe is not None
                picks[tokens] = probe.chosen
                print(f"{tokens} tokens: {probe.describe()}; load {time.perf_counter() - t0:.2f}s", flush=True)
        pool = make_items(8192 if cuda else 512, tokens)
        first = next(iter(models.values()))
        assert all(len(first.tokens(item)) == tokens for item in pool[:50])
        reference = models["fp32"].logits(pool[:256]) if "fp32" in models else None
        rho = {name: spearman(reference, m.logits(pool[:256])) if reference else None for name, m in models.items()}
        for t, batch, callers in cells:
            if t != tokens:
                continue
            rates: dict[str, list[float]] = {name: [] for name in models}
            names = list(models)
            for r in range(args.repeats):
                for name in names[r % len(names):] + names[: r % len(names)]:
                    rates[name].append(measure(models[name], batch, callers, args.seconds, pool))
            for name, got in rates.items():
                row: dict[str, Any] = {
                    "device": "cuda" if cuda else "cpu",
                    "path": f"auto={picks[tokens]}" if name == "auto" else name,
                    "tokens": tokens,
                    "batch": batch,
                    "callers": callers,
                    "items_per_s": round(statistics.median(got), 1),
                    "best": round(max(got), 1),
                    "rho": None if (rho_n := rho[name]) is None else round(rho_n, 4),
                }
                if peak:
                    row["share_of_bf16_peak"] = round(statistics.median(got) * flops_per_item(models[name], tokens) / peak, 3)
                rows.append(row)
                print(row, flush=True)
        for m in models.values():
            m.close()
    load_after = os.getloadavg()
    extra = {
        "torch": torch.__version__,
        "cpu": cpu,
        "auto_picked": {str(t): p for t, p in picks.items()},
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "bf16_matmul_peak_tflops": round(peak / 1e12, 1) if peak else None,
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "repeats": args.repeats,
        "seconds_per_round": args.seconds,
        "note": "items_per_s is the median of the rounds; CPU cells are noisy when other processes share the cores",
    }
    emit("reward_throughput", f"Reward model throughput (items/s) on {cpu['cpu']} [{' '.join(cpu['flags'])}]", rows, extra)
    print({k: v for k, v in extra.items() if k != "note"})


if __name__ == "__main__":
    main()
