"""Reward-model training time, before and after the two speed-ups of issue 12 (item 5):

- "before": torch's default (for-loop) AdamW on CPU, every pass through the whole encoder;
- "after":  fused AdamW, and what frozen layers compute kept per item for the run
            (`trajgraph/reward/_fit.py`, `FrozenPrefix`), so the probe, each epoch and each
            evaluation run only the trainable layers.

Both train the same model from the same data and seed; the table shows wall seconds (total
and per phase), the process's CPU seconds, and the validation AUC of each epoch (equal before and after: the speed-ups change
no result). The data: `--db` (a store; `--groups N` keeps its first N tasks, 8 by default:
the demo trains on the exploration of 8 TextWorld games), else a generated deceptive-chain
store. The CPU model, flags and load average are printed and saved with the table.

And the precision of the training steps (`train_precision`, eleventh session): `--precisions fp32 bf16`
trains the "after" model once per precision (the steps' forward and backward passes in bfloat16 autocast,
weights and AdamW fp32).

Run: python benchmarks/reward_training.py [--db runs.db] [--groups 8] [--freeze 0 4] [--epochs 2]
     python benchmarks/reward_training.py --db runs.db --freeze 0 --epochs 1 --variants after --precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _table import emit

import trajgraph as tg
from trajgraph.reward import Dataset, _fit, build_dataset, train


def chain_store(path: Path) -> tg.Store:
    from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph

    store = tg.Store(path)
    for s in range(10):
        graph = tg.record(deceptive_chain_graph(depth=3, skill=0.5, trap=0.3, seed=s), store=store, task=lambda st: st["task"])
        for _ in range(20):
            graph.invoke(chain_start(f"chain-{s}"))
    for run in store.runs():
        store.update_run(run.id, outcome=run.output["reward"])
    return store


def run(data: Dataset, out: Path, variant: str, freeze: int, epochs: int, max_length: int, precision: str = "auto") -> dict[str, Any]:
    real_options, real_of = _fit.adam_options, _fit.FrozenPrefix.of
    if variant == "before":
        _fit.adam_options = lambda dev: {}  # torch's default AdamW
        _fit.FrozenPrefix.of = classmethod(lambda cls, *a: None)  # type: ignore[assignment,method-assign]
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        report = train(data, out, epochs=epochs, freeze_layers=freeze, max_length=max_length, seed=0, patience=epochs, progress=False,
                       train_precision=precision)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    finally:
        _fit.adam_options, _fit.FrozenPrefix.of = real_options, real_of  # type: ignore[method-assign]
    by_epoch = {e.epoch: e for e in report.epochs}
    return {
        "variant": variant,
        "freeze_layers": freeze,
        "train_precision": precision,
        "train_items": report.n_train,
        "val_items": report.n_val,
        "total_s": round(seconds, 1),
        "cpu_s": round(cpu_seconds, 1),  # this process's CPU time: less moved than wall time by other processes
        "probe_s": round(by_epoch[0].seconds, 1) if 0 in by_epoch else None,
        "epoch_s": [round(by_epoch[e].seconds, 1) for e in sorted(by_epoch) if e > 0],
        "val_auc": [None if (auc := by_epoch[e].val_auc) is None else round(auc, 4) for e in sorted(by_epoch)],
    }


def adam_steps(repeats: int = 5, steps: int = 10) -> list[dict[str, Any]]:
    """ms per AdamW step over MiniLM-L6's parameters (random gradients): torch's CPU default
    (a loop over tensors), foreach and fused, timed in turns, median of `repeats` rounds."""
    import statistics

    import torch

    from trajgraph.reward import _net

    net = _net.load_backbone(_net.default_backbone())[0]
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    variants: dict[str, dict[str, Any]] = {"default (for-loop)": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    optimizers = {name: torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, **opts) for name, opts in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for opt in optimizers.values():
        opt.step()  # state allocated outside the timing
    for _ in range(repeats):
        for name, opt in optimizers.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            times[name].append((time.perf_counter() - t0) / steps * 1000)
    n_params = sum(p.numel() for p in params)
    return [{"adamw": name, "params": n_params, "ms_per_step": round(statistics.median(t), 1), "best_ms": round(min(t), 1)}
            for name, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, help="a store to train on (default: a generated deceptive-chain store)")
    parser.add_argument("--groups", type=int, default=8, help="keep the store's first N tasks (0: all)")
    parser.add_argument("--freeze", type=int, nargs="+", default=[0, 4], help="freeze_layers settings to compare")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--variants", nargs="+", default=["before", "after"], choices=["before", "after"])
    parser.add_argument("--precisions", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"],
                        help="train_precision settings to compare (the 'before' variant runs once, in the first)")
    args = parser.parse_args()

    import torch

    from trajgraph.reward._paths import cpu_info

    cpu = cpu_info()
    tmp = tempfile.TemporaryDirectory()
    store = tg.Store(args.db, readonly=True) if args.db else chain_store(Path(tmp.name) / "chain.db")
    data = build_dataset(store, "auto")
    if args.groups:
        data = data.subset(data.groups[: args.groups])
    print(f"CPU: {cpu['cpu']}; flags: {' '.join(cpu['flags'])}; torch {torch.__version__}, {cpu['threads']} threads; "
          f"{len(data.examples)} examples, {len(data.pairs)} pairs, {len(data.groups)} tasks; load {os.getloadavg()[0]:.2f}", flush=True)
    load_before = os.getloadavg()
    steps = adam_steps()
    for row in steps:
        print(row, flush=True)
    rows = []
    for freeze in args.freeze:
        for variant in args.variants:
            for precision in args.precisions if variant == "after" else args.precisions[:1]:
                rows.append(run(data, Path(tmp.name) / f"rm-{variant}-{freeze}-{precision}", variant, freeze, args.epochs,
                                args.max_length, precision))
                print(rows[-1], flush=True)
    extra = {"adam_steps": steps, "cpu": cpu, "torch": torch.__version__, "epochs": args.epochs, "max_length": args.max_length,
             "data": str(args.db or "generated chain store"), "groups": args.groups,
             "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}
    name = "reward_training_precision" if len(args.precisions) > 1 else "reward_training"  # kept apart from the AdamW table
    emit(name, f"Reward-model training seconds on {cpu['cpu']} [{' '.join(cpu['flags'])}]", rows, extra)


if __name__ == "__main__":
    main()
