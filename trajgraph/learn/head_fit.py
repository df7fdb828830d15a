"""Fitting a `TrainablePolicy`'s head on decisions and step-level pairs (see trainable.py).

Every distinct text is encoded once by the frozen MiniLM; examples then hold
row indices into that table, so an epoch is a few small matrix products.
Validation holds out whole tasks (unseen games, as at test time) and keeps the
epoch with the best held-out loss.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.policies.head import TrainablePolicy, n_scalars


@dataclass
class FitConfig:
    epochs: int = 30
    min_steps: int = 300  # small data sets get more epochs: at least this many optimizer steps
    batch: int = 64  # decisions (and as many pairs) per step
    lr: float = 2e-3
    weight_decay: float = 1e-2
    pair_weight: float = 1.0  # Bradley-Terry loss on pairs, relative to the decision loss
    detour_weight: float = 1.0  # unlikelihood of detours (actions that led straight back), relative to the decision loss
    val_fraction: float = 0.2  # of tasks held out to pick the epoch (none when fewer than 3 tasks)
    seed: int = 0
    bc_weight: float = 1.0  # behaviour cloning of successful decisions (0: off)
    target_weight: float = 1.0  # cross-entropy to the search's soft targets (trajgraph.learn.targets; 0: off)
    target_kind: str = "q"  # "q": softmax(Q / target_temperature); "visits": N^(1 / target_temperature)
    target_temperature: float = 0.1
    target_weighting: str = "spread"  # per-state weight: "spread" (max Q - min Q), "advantage" (max Q - V), "none"


@dataclass
class FitReport:
    decisions: int
    preferences: int
    detours: int
    train_tasks: int
    val_tasks: int
    epochs_run: int
    best_epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    targets: int = 0


class _Table:
    """Distinct texts -> rows of one embedding matrix."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        return self.index.setdefault(text, len(self.index))


def _rows(policy: TrainablePolicy, examples: Sequence[tuple[dict[str, Any], list[str], Any]], table: _Table) -> tuple[list[list[int]], list[list[float]], list[int]]:
    """Per candidate: [command, next, observation, last, has last, clause, has clause] text rows, scalars, and its example index.
    (An example is (policy view, commands, the user's raw state or None), the raw state for a node base.)"""
    idx, scal, seg = [], [], []
    for e, (state, commands, raw) in enumerate(examples):
        parts = policy.parts(state, commands, raw)
        ctx = [table(t) for t in parts.context]
        clauses = parts.clauses or [""] * len(parts.commands)
        for c, s, cl in zip(parts.commands, parts.scalars, clauses):
            idx.append([table(c), *ctx, 1 if parts.context[2] else 0, table(cl), 1 if cl else 0])
            scal.append(s)
            seg.append(e)
    return idx, scal, seg


def fit(policy: TrainablePolicy, decisions: Sequence[Any], preferences: Sequence[Any], config: FitConfig | None = None,
        progress: Callable[[int, int], None] | None = None, detours: Sequence[Any] = (), targets: Sequence[Any] = ()) -> FitReport:
    """Train `policy.head` in place; returns what it learned from and the held-out metrics.

    decisions: softmax over the admissible commands towards the one taken; preferences:
    Bradley-Terry on (chosen, rejected); detours: unlikelihood, -log(1 - p(action)),
    of actions that led straight back to where they started (Welleck et al. 2019); targets
    (`trajgraph.learn.targets.SoftTarget`): weighted cross-entropy of the softmax over the
    admissible commands to the search's improved distribution at that state (ExIt / AlphaZero)."""
    import torch

    cfg = config or FitConfig()
    if cfg.bc_weight == 0:
        decisions = []
    if cfg.target_weight == 0:
        targets = []
    if not decisions and not preferences and not targets:
        raise ConfigError("nothing to train on: no decisions, no soft targets and no preference pairs")
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    tasks = sorted({str(x.task) for x in [*decisions, *preferences, *detours, *targets]})
    rng = random.Random(cfg.seed)
    n_val = int(len(tasks) * cfg.val_fraction) if len(tasks) >= 3 else 0
    val_tasks = set(rng.sample(tasks, n_val))

    table = _Table()
    # decisions: the chosen command first, then the other admissible ones
    d_examples = [(d.state, [d.action] + [a for a in dict.fromkeys(d.state["actions"]) if a != d.action], getattr(d, "raw", None)) for d in decisions]
    p_examples = [(p.state, [p.chosen, p.rejected], getattr(p, "raw", None)) for p in preferences]
    n_examples = [(d.state, [d.action] + [a for a in dict.fromkeys(d.state["actions"]) if a != d.action], getattr(d, "raw", None)) for d in detours]
    n_examples = [e for e in n_examples if len(e[1]) > 1]  # a detour with no alternative teaches nothing
    t_examples, t_probs, t_w, t_tasks = [], [], [], []
    for t in targets:
        dist = t.distribution(cfg.target_kind, cfg.target_temperature)
        w = t.weight(cfg.target_weighting)
        commands = list(dict.fromkeys([*(t.state.get("actions") or []), *dist]))
        if w <= 0 or len(commands) < 2:
            continue
        t_examples.append((t.state, commands, None))
        t_probs += [dist.get(c, 0.0) for c in commands]
        t_w.append(w)
        t_tasks.append(str(t.task))
    d_idx, d_scal, d_seg = _rows(policy, d_examples, table)
    t_idx, t_scal, t_seg = _rows(policy, t_examples, table)
    n_idx, n_scal, n_seg = _rows(policy, n_examples, table)
    p_idx, p_scal, p_seg = _rows(policy, p_examples, table)
    width = n_scalars(str(policy.card.get("features", "full")))
    texts = sorted(table.index, key=table.index.__getitem__)
    emb = torch.cat([policy.encoder.embed(texts[i : i + 256]) for i in range(0, len(texts), 256)]) if texts else torch.zeros(0, 384)

    def pack(idx: list[list[int]], scal: list[list[float]], seg: list[int]) -> dict[str, Any]:
        return {"idx": torch.tensor(idx, dtype=torch.long).reshape(-1, 7), "scal": torch.tensor(scal, dtype=torch.float32).reshape(-1, width),
                "seg": torch.tensor(seg, dtype=torch.long)}

    D, P, N = pack(d_idx, d_scal, d_seg), pack(p_idx, p_scal, p_seg), pack(n_idx, n_scal, n_seg)
    T = pack(t_idx, t_scal, t_seg)
    T["prob"] = torch.tensor(t_probs, dtype=torch.float32)
    t_weight = torch.tensor(t_w, dtype=torch.float32)
    t_weight = t_weight / t_weight.mean() if len(t_w) else t_weight  # mean weight 1: target_weight keeps its scale
    t_val = torch.tensor([x in val_tasks for x in t_tasks], dtype=torch.bool)
    d_val = torch.tensor([str(d.task) in val_tasks for d in decisions], dtype=torch.bool)
    p_val = torch.tensor([str(p.task) in val_tasks for p in preferences], dtype=torch.bool)
    head = policy.head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def score(data: dict[str, Any], rows: Any) -> Any:
        i = data["idx"][rows]
        ctx = emb[i[:, 1:4]] * torch.stack([torch.ones_like(i[:, 4]), torch.ones_like(i[:, 4]), i[:, 4]], 1).unsqueeze(-1).float()
        if getattr(head, "clause", False):  # the command's own clause of the observation, zero where there is none
            ctx = torch.cat([ctx, (emb[i[:, 5]] * i[:, 6:7].float()).unsqueeze(1)], dim=1)
        return head(emb[i[:, 0]], ctx, data["scal"][rows])

    def decision_loss(examples: Any, data: dict[str, Any] = D, negative: bool = False) -> tuple[Any, Any]:
        """Mean cross-entropy of the chosen command (first row of each example) and top-1 accuracy;
        negative: the mean unlikelihood -log(1 - p(first row)) and how often it is not top-1."""
        if len(examples) == 0:
            return torch.zeros(()), torch.zeros(())
        rows = torch.isin(data["seg"], examples).nonzero().squeeze(-1)
        s, seg = score(data, rows), data["seg"][rows]
        _, local = torch.unique_consecutive(seg, return_inverse=True)
        n = int(local.max()) + 1
        lse = torch.full((n,), -1e9).scatter_reduce(0, local, s, reduce="amax")
        lse = lse + torch.zeros(n).scatter_add(0, local, (s - lse[local]).exp()).log()
        first = torch.ones_like(local, dtype=torch.bool)
        first[1:] = local[1:] != local[:-1]
        chosen = s[first]
        top = torch.full((n,), -1e9).scatter_reduce(0, local, s, reduce="amax")
        if negative:  # log(1 - p) = logsumexp(others) - logsumexp(all)
            rest = s.masked_fill(first, -1e9)
            m = torch.full((n,), -1e9).scatter_reduce(0, local, rest, reduce="amax")
            lse_rest = m + torch.zeros(n).scatter_add(0, local, (rest - m[local]).exp()).log()
            return (lse - lse_rest).mean(), (chosen < top).float().mean()
        return (lse - chosen).mean(), (chosen >= top).float().mean()

    def target_loss(examples: Any) -> tuple[Any, Any]:
        """Weighted cross-entropy to the soft targets, and how often the top-1 is the target's best."""
        if len(examples) == 0:
            return torch.zeros(()), torch.zeros(())
        rows = torch.isin(T["seg"], examples).nonzero().squeeze(-1)
        s, seg, prob = score(T, rows), T["seg"][rows], T["prob"][rows]
        _, local = torch.unique_consecutive(seg, return_inverse=True)
        n = int(local.max()) + 1
        top = torch.full((n,), -1e9).scatter_reduce(0, local, s, reduce="amax")
        lse = top + torch.zeros(n).scatter_add(0, local, (s - top[local]).exp()).log()
        ce = torch.zeros(n).scatter_add(0, local, -prob * (s - lse[local]))
        w = t_weight[torch.unique_consecutive(seg)]
        best_p = torch.full((n,), -1.0).scatter_reduce(0, local, prob, reduce="amax")
        hit = torch.zeros(n).scatter_add(0, local, ((s >= top[local]) & (prob >= best_p[local])).float())
        return (w * ce).sum() / w.sum(), (hit > 0).float().mean()

    def pair_loss(examples: Any) -> tuple[Any, Any]:
        if len(examples) == 0:
            return torch.zeros(()), torch.zeros(())
        rows = torch.stack([2 * examples, 2 * examples + 1], 1).flatten()
        s = score(P, rows).reshape(-1, 2)
        margin = s[:, 0] - s[:, 1]
        return torch.nn.functional.softplus(-margin).mean(), (margin > 0).float().mean()

    neg_val = torch.tensor([str(d.task) in val_tasks for d in detours if len(set(d.state["actions"])) > 1], dtype=torch.bool)
    d_train, d_hold = (~d_val).nonzero().squeeze(-1), d_val.nonzero().squeeze(-1)
    n_train, n_hold = (~neg_val).nonzero().squeeze(-1), neg_val.nonzero().squeeze(-1)
    p_train, p_hold = (~p_val).nonzero().squeeze(-1), p_val.nonzero().squeeze(-1)
    t_train, t_hold = (~t_val).nonzero().squeeze(-1), t_val.nonzero().squeeze(-1)

    def evaluate(d: Any, p: Any, neg: Any, t: Any) -> dict[str, float]:
        with torch.no_grad():
            dl, da = decision_loss(d)
            pl, pa = pair_loss(p)
            nl, na = decision_loss(neg, N, negative=True)
            tl, ta = target_loss(t)
        return {"loss": float(cfg.bc_weight * dl + cfg.pair_weight * pl + cfg.detour_weight * nl + cfg.target_weight * tl),
                "top1": float(da), "pair_acc": float(pa), "detour_avoided": float(na), "target_ce": float(tl), "target_top1": float(ta)}

    before = evaluate(d_hold, p_hold, n_hold, t_hold) if n_val else evaluate(d_train, p_train, n_train, t_train)
    best, best_epoch, best_state = before["loss"], 0, {k: v.clone() for k, v in head.state_dict().items()}
    g = torch.Generator().manual_seed(cfg.seed)
    steps = max(1, -(-max(len(d_train), len(p_train), len(n_train), len(t_train)) // cfg.batch))
    epochs = max(cfg.epochs, -(-cfg.min_steps // steps))
    for epoch in range(1, epochs + 1):
        d_perm = d_train[torch.randperm(len(d_train), generator=g)]
        p_perm = p_train[torch.randperm(len(p_train), generator=g)]
        n_perm = n_train[torch.randperm(len(n_train), generator=g)]
        t_perm = t_train[torch.randperm(len(t_train), generator=g)]
        p_batch, n_batch = max(1, -(-len(p_perm) // steps)), max(1, -(-len(n_perm) // steps))
        t_batch = max(1, -(-len(t_perm) // steps))
        for b in range(steps):
            d_b = d_perm[b * cfg.batch : (b + 1) * cfg.batch].sort().values
            p_b = p_perm[b * p_batch : (b + 1) * p_batch]
            n_b = n_perm[b * n_batch : (b + 1) * n_batch].sort().values
            t_b = t_perm[b * t_batch : (b + 1) * t_batch].sort().values
            loss = (cfg.bc_weight * decision_loss(d_b)[0] + cfg.pair_weight * pair_loss(p_b)[0]
                    + cfg.detour_weight * decision_loss(n_b, N, negative=True)[0] + cfg.target_weight * target_loss(t_b)[0])
            if loss.requires_grad:
                opt.zero_grad()
                loss.backward()
                opt.step()
        if n_val:
            val = evaluate(d_hold, p_hold, n_hold, t_hold)["loss"]
            if val < best:
                best, best_epoch, best_state = val, epoch, {k: v.clone() for k, v in head.state_dict().items()}
        if progress is not None:
            progress(epoch, epochs)
    if n_val:
        head.load_state_dict(best_state)  # the epoch that did best on unseen tasks
    else:
        best_epoch = epochs
    head.eval()
    after_train, after_val = evaluate(d_train, p_train, n_train, t_train), (evaluate(d_hold, p_hold, n_hold, t_hold) if n_val else {})
    metrics = {f"train_{k}": v for k, v in after_train.items()}
    metrics.update({f"val_{k}": v for k, v in after_val.items()})
    metrics.update({f"before_{'val' if n_val else 'train'}_{k}": v for k, v in before.items()})
    return FitReport(decisions=len(decisions), preferences=len(preferences), detours=len(n_examples), targets=len(t_examples),
                     train_tasks=len(tasks) - n_val, val_tasks=n_val,
                     epochs_run=epochs, best_epoch=best_epoch, metrics={k: round(v, 4) for k, v in metrics.items()},
                     seconds=time.perf_counter() - started)


__all__ = ["FitConfig", "FitReport", "fit"]
