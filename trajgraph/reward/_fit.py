"""The pieces of fitting a reward model: batches, losses, the linear probe, evaluation.

Private to `train.py`, which imports it inside `train()` (this module imports torch).
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F

from trajgraph.reward import _net
from trajgraph.reward._net import Encoded, RewardNet
from trajgraph.reward.data import Dataset, Example, PairExample
from trajgraph.reward.metrics import sibling_accuracy, weighted_auc


class Cache:
    """Encode each item once per training run (items repeat across epochs and pairs)."""

    def __init__(self, text_encoder: Any) -> None:
        self.text_encoder = text_encoder
        self.cache: dict[Any, Encoded] = {}

    def __call__(self, items: list[Any]) -> list[Encoded]:
        todo = [i for i in dict.fromkeys(items) if i not in self.cache]
        for item, enc in zip(todo, self.text_encoder.encode(todo)):
            self.cache[item] = enc
        return [self.cache[i] for i in items]


def plan(data: Dataset, batch_size: int, rng: random.Random, encode: Cache) -> list[tuple[str, list[Any]]]:
    """Shuffled batches; within windows of 8 batches items are sorted by length (less padding)."""
    batches: list[tuple[str, list[Any]]] = []
    sources: tuple[tuple[str, list[Any], int], ...] = (
        ("point", list(data.examples), batch_size),
        ("pair", list(data.pairs), max(1, batch_size // 2)),  # a pair is two forward items
    )
    for kind, rows, size in sources:
        rng.shuffle(rows)
        window = size * 8
        for w in range(0, len(rows), window):
            chunk = rows[w : w + window]
            lengths = [len(e.ids) for e in encode([_first(r) for r in chunk])]
            order = sorted(range(len(chunk)), key=lambda i: lengths[i])
            chunk = [chunk[i] for i in order]
            batches += [(kind, chunk[i : i + size]) for i in range(0, len(chunk), size)]
    rng.shuffle(batches)
    return batches


def _first(row: Example | PairExample) -> Any:
    return row.item if isinstance(row, Example) else row.chosen


def _forward(net: RewardNet, items: list[Any], encode: Cache, pad_id: int, dev: torch.device) -> torch.Tensor:
    return net(**_net.collate(encode(items), pad_id, dev))


def loss(
    net: RewardNet, batch: tuple[str, list[Any]], encode: Cache, pad_id: int, dev: torch.device, mean_n: float
) -> torch.Tensor:
    """Weighted BCE on soft labels for pointwise rows; -log sigmoid(s_c - s_r) for pairs."""
    kind, rows = batch
    if kind == "point":
        logits = _forward(net, [r.item for r in rows], encode, pad_id, dev)
        target = torch.tensor([r.label for r in rows], device=dev)
        weight = torch.tensor([r.count / mean_n for r in rows], device=dev)
        return (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).mean()
    both = _forward(net, [r.chosen for r in rows] + [r.rejected for r in rows], encode, pad_id, dev)
    return -F.logsigmoid(both[: len(rows)] - both[len(rows) :]).mean()


def mean_count(data: Dataset) -> float:
    counts = [e.count for e in data.examples]
    return sum(counts) / len(counts) if counts else 1.0


def evaluate(net: RewardNet, data: Dataset, encode: Cache, pad_id: int, dev: torch.device, batch_size: int) -> dict[str, float | None]:
    """Validation loss (as in training), AUC (success vs failure copies), pairwise accuracy."""
    net.eval()
    rows = [e.item for e in data.examples] + [p.chosen for p in data.pairs] + [p.rejected for p in data.pairs]
    logits = _score_all(net, rows, encode, pad_id, dev, batch_size)
    n, m = len(data.examples), len(data.pairs)
    point, chosen, rejected = logits[:n], logits[n : n + m], logits[n + m :]
    total = 0.0
    if n:
        target = torch.tensor([e.label for e in data.examples])
        mean_n = mean_count(data)
        weight = torch.tensor([e.count / mean_n for e in data.examples])
        total += float((F.binary_cross_entropy_with_logits(torch.tensor(point), target, reduction="none") * weight).mean())
    if m:
        total += float(-F.logsigmoid(torch.tensor(chosen) - torch.tensor(rejected)).mean())
    auc = weighted_auc(point, [e.positives for e in data.examples], [e.count - e.positives for e in data.examples])
    if m:
        pair_acc: float | None = sum(c > r for c, r in zip(chosen, rejected)) / m
    else:
        pair_acc = sibling_accuracy(data.examples, point)
    return {"loss": total, "auc": auc, "pair_accuracy": pair_acc}


def _score_all(net: RewardNet, items: list[Any], encode: Cache, pad_id: int, dev: torch.device, batch_size: int) -> list[float]:
    return run_all(net, net.forward, items, encode, pad_id, dev, batch_size).tolist()


def run_all(net: RewardNet, fn: Any, items: list[Any], encode: Cache, pad_id: int, dev: torch.device, batch_size: int) -> torch.Tensor:
    """fn(**inputs) over all items in length-sorted batches, results in item order (on CPU, fp32)."""
    encoded = encode(items)
    order = sorted(range(len(items)), key=lambda i: len(encoded[i].ids))
    parts = []
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [encoded[i] for i in order[start : start + batch_size]]
            parts.append(fn(**_net.collate(batch, pad_id, dev)).float().cpu())
    out = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return out[inverse].clone()  # clone: leave inference mode, so the probe can train on it


def probe(
    net: RewardNet, data: Dataset, encode: Cache, pad_id: int, dev: torch.device, steps: int, batch_size: int, mean_n: float
) -> float:
    """Fit the head alone on frozen pooled features, then fine-tune (LP-FT: Kumar et al., ICLR 2022).

    A fresh head trained jointly with the encoder needs many steps to find its
    direction and meanwhile pushes noise into the encoder; on cached features
    hundreds of full-batch head steps cost less than one epoch of fine-tuning.
    """
    net.eval()
    items = [e.item for e in data.examples] + [p.chosen for p in data.pairs] + [p.rejected for p in data.pairs]
    feats = run_all(net, net.embed, items, encode, pad_id, dev, batch_size).to(dev)  # (N + 2M, H)
    n, m = len(data.examples), len(data.pairs)
    target = torch.tensor([e.label for e in data.examples], device=dev)
    weight = torch.tensor([e.count / mean_n for e in data.examples], device=dev)
    optimizer = torch.optim.Adam(net.head.parameters(), lr=1e-2)
    for _ in range(steps):
        logits = net.head(feats).squeeze(-1)
        objective = torch.zeros((), device=dev)
        if n:
            objective = objective + (F.binary_cross_entropy_with_logits(logits[:n], target, reduction="none") * weight).mean()
        if m:
            objective = objective - F.logsigmoid(logits[n : n + m] - logits[n + m :]).mean()
        # L2 keeps the head small: texts of one environment differ in few feature directions,
        # and a large head would turn the encoder's first fine-tuning steps into big score jumps.
        objective = objective + 1e-3 * net.head.weight.pow(2).sum()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
    return float(objective.detach())
