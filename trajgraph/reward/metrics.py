"""Ranking metrics for reward models, in plain Python (no numpy, no sklearn).

`weighted_auc` takes merged examples (one item standing for several successes
and failures); `sibling_accuracy` is pairwise accuracy among candidate actions
of one prefix; `spearman` compares two rankings (the int8 path against fp32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trajgraph.reward.data import Example


def weighted_auc(scores: Sequence[float], positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """ROC AUC where item i stands for positives[i] successes and negatives[i] failures; ties count half."""
    total_pos, total_neg = sum(positives), sum(negatives)
    if total_pos == 0 or total_neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    wins, neg_below, i = 0.0, 0.0, 0
    while i < len(order):  # walk groups of equal scores upwards
        j = i
        while j < len(order) and scores[order[j]] == scores[order[i]]:
            j += 1
        pos = sum(positives[k] for k in order[i:j])
        neg = sum(negatives[k] for k in order[i:j])
        wins += pos * (neg_below + 0.5 * neg)
        neg_below += neg
        i = j
    return wins / (total_pos * total_neg)


def sibling_accuracy(examples: Sequence[Example], scores: Sequence[float]) -> float | None:
    """How often, among candidate actions of one prefix, the higher-valued one scores higher."""
    siblings: dict[tuple[str, Any, Any], list[int]] = {}
    for i, e in enumerate(examples):
        if e.item.action is not None:
            siblings.setdefault((e.group, e.item.task, e.item.turns), []).append(i)
    right = total = 0
    for idx in siblings.values():
        for a in idx:
            for b in idx:
                if examples[a].label > examples[b].label + 1e-6:
                    total += 1
                    right += scores[a] > scores[b]
    return right / total if total else None


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("spearman needs two sequences of equal length >= 2")
    ra, rb = _ranks(a), _ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5 if va and vb else 0.0


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and values[order[j]] == values[order[i]]:
            j += 1
        for k in order[i:j]:
            ranks[k] = (i + j - 1) / 2
        i = j
    return ranks


__all__ = ["weighted_auc", "sibling_accuracy", "spearman"]
