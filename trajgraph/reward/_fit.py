"""The pieces of fitting a reward model: batches, losses, the linear probe, evaluation.

Private to `train.py`, which imports it inside `train()` (this module imports torch).

What frozen layers compute is computed once per training run: with
`freeze_layers=k`, the embeddings and the lowest k layers give the same hidden
states for an item in every epoch, in the probe and in every evaluation, so
`FrozenPrefix` keeps them per item and each later pass runs only the trainable
layers and the head (`Cache.frozen_prefix`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from trajgraph.reward import _net
from trajgraph.reward._net import Encoded, RewardNet
from trajgraph.reward.data import Dataset, Example, PairExample
from trajgraph.reward.metrics import sibling_accuracy, weighted_auc

PREFIX_BYTES = 2 << 30  # kept frozen hidden states stop growing here (fp32: ~43,000 items of 128 tokens x 384)


class Cache:
    """Encode each item once per training run (items repeat across epochs and pairs), and keep
    what the frozen layers compute for it (see `frozen_prefix`)."""

    def __init__(self, text_encoder: Any) -> None:
        self.text_encoder = text_encoder
        self.cache: dict[Any, Encoded] = {}
        self._prefix: tuple[int, FrozenPrefix | None] | None = None  # (id(net), prefix or None), decided once

    def __call__(self, items: list[Any]) -> list[Encoded]:
        todo = [i for i in dict.fromkeys(items) if i not in self.cache]
        for item, enc in zip(todo, self.text_encoder.encode(todo)):
            self.cache[item] = enc
        return [self.cache[i] for i in items]

    def frozen_prefix(self, net: RewardNet, pad_id: int, dev: torch.device) -> FrozenPrefix | None:
        """The frozen-layer cache for `net`, or None when nothing is frozen or the encoder is not BERT-like."""
        if self._prefix is None or self._prefix[0] != id(net):
            self._prefix = (id(net), FrozenPrefix.of(net, self, pad_id, dev))
        return self._prefix[1]


class FrozenPrefix:
    """Hidden states after the frozen embeddings and lowest encoder layers, kept per item.

    Runs BERT-style encoders (`encoder.embeddings`, `encoder.encoder.layer[i]`)
    layer by layer: frozen part once per item (no_grad, fp32, unpadded), the
    trainable layers per batch on the kept states, padded to the batch's
    longest item. Checked against the full forward on first use (`of`): if this
    transformers computes something else, training runs the plain way.
    """

    def __init__(self, net: RewardNet, n_frozen: int, encode: Cache, pad_id: int, dev: torch.device) -> None:
        self.net, self.n_frozen, self.encode, self.pad_id, self.dev = net, n_frozen, encode, pad_id, dev
        self.layers = list(net.encoder.encoder.layer)
        self.kept: dict[Any, torch.Tensor] = {}  # item -> (T_item, H)
        self.bytes = 0

    @classmethod
    def of(cls, net: RewardNet, encode: Cache, pad_id: int, dev: torch.device) -> FrozenPrefix | None:
        layers = getattr(getattr(net.encoder, "encoder", None), "layer", None)
        embeddings = getattr(net.encoder, "embeddings", None)
        if layers is None or embeddings is None or any(p.requires_grad for p in embeddings.parameters()):
            return None
        n = 0
        while n < len(layers) and not any(p.requires_grad for p in layers[n].parameters()):
            n += 1
        if n == 0:
            return None
        prefix = cls(net, n, encode, pad_id, dev)
        return prefix if prefix._agrees() else None

    def _agrees(self) -> bool:
        """Layer by layer gives the full forward's logits (same transformers internals), on a small batch."""
        batch = [
            _net.Encoded([101, 2023 + i, 2003, 1037, 3231, 102][: 3 + i], [0] * (3 + i)) for i in range(3)
        ]  # lengths 3..5: padding and masking exercised
        inputs = _net.collate(batch, self.pad_id, self.dev)
        with torch.no_grad():
            try:
                hidden = self._run(self.layers[: self.n_frozen], self._embed(inputs), inputs["attention_mask"])
                split = self._head(self._run(self.layers[self.n_frozen :], hidden, inputs["attention_mask"]), inputs["attention_mask"])
            except Exception:  # another signature in another transformers: the plain path still works
                return False
            full = self.net(**inputs)
        return bool(torch.allclose(split, full, atol=1e-4, rtol=1e-4))

    # -- the parts ----------------------------------------------------------------------

    def _embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        kwargs = {"input_ids": inputs["input_ids"]}
        if self.net.token_types:
            kwargs["token_type_ids"] = inputs["token_type_ids"]
        return self.net.encoder.embeddings(**kwargs)

    @staticmethod
    def _run(layers: list[Any], hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # additive mask (B, 1, 1, T): what BERT layers take, eager or SDPA, in transformers 4 and 5
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in layers:
            out = layer(hidden, additive)
            hidden = out[0] if isinstance(out, tuple) else out  # transformers 4 returns a tuple
        return hidden

    def _head(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)  # as RewardNet.embed
        return self.net.head(pooled).squeeze(-1).float()

    # -- per batch ------------------------------------------------------------------------

    def states(self, items: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden after the frozen layers (B, T, H), attention mask (B, T)) for a batch of items."""
        todo = [i for i in dict.fromkeys(items) if i not in self.kept]
        fresh: dict[Any, torch.Tensor] = {}
        if todo:
            encoded = self.encode(todo)
            # normal (not inference) tensors: they feed layers that train, and autograd saves its inputs
            with torch.inference_mode(False), torch.no_grad():
                inputs = _net.collate(encoded, self.pad_id, self.dev)
                hidden = self._run(self.layers[: self.n_frozen], self._embed(inputs), inputs["attention_mask"])
            for row, (item, enc) in enumerate(zip(todo, encoded)):
                state = hidden[row, : len(enc.ids)].clone()
                if self.bytes + state.numel() * state.element_size() <= PREFIX_BYTES:
                    self.kept[item] = state
                    self.bytes += state.numel() * state.element_size()
                else:  # over the memory cap: used for this batch only
                    fresh[item] = state
        rows = [self.kept[i] if i in self.kept else fresh[i] for i in items]
        width = max(r.shape[0] for r in rows)
        hidden = torch.zeros(len(rows), width, rows[0].shape[1], dtype=rows[0].dtype, device=self.dev)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.dev)
        for b, r in enumerate(rows):
            hidden[b, : r.shape[0]] = r
            mask[b, : r.shape[0]] = 1
        return hidden, mask

    def embed(self, items: list[Any]) -> torch.Tensor:
        """Pooled features (B, H), as `RewardNet.embed`."""
        hidden, mask = self.states(items)
        hidden = self._run(self.layers[self.n_frozen :], hidden, mask)
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    def logits(self, items: list[Any]) -> torch.Tensor:
        """Logits (B,), as `RewardNet.forward`."""
        hidden, mask = self.states(items)
        return self._head(self._run(self.layers[self.n_frozen :], hidden, mask), mask)


def model_fn(net: RewardNet, encode: Cache, pad_id: int, dev: torch.device, what: str = "logits") -> Callable[[list[Any]], torch.Tensor]:
    """items -> logits (or pooled features, what="embed"), through the frozen-layer cache where there is one."""
    prefix = encode.frozen_prefix(net, pad_id, dev)
    if prefix is not None:
        return prefix.embed if what == "embed" else prefix.logits
    fn = net.embed if what == "embed" else net.forward
    return lambda items: fn(**_net.collate(encode(items), pad_id, dev))


def adam_options(dev: torch.device) -> dict[str, Any]:
    """One fused kernel for every parameter (CPU since torch 2.4, CUDA): the for-loop default costs
    a few kernel launches per tensor per step."""
    return {"fused": True} if dev.type in ("cpu", "cuda") else {"foreach": True}


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
    return model_fn(net, encode, pad_id, dev)(items)


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


def evaluate(net: RewardNet, data: Dataset, encode: Cache, pad_id: int, dev: torch.device, batch_size: int, *,
             bf16_on: str | None = None) -> dict[str, float | None]:
    """Validation loss (as in training), AUC (success vs failure copies), pairwise accuracy
    (`bf16_on`: the forward passes in bfloat16 autocast, see `run_all`)."""
    net.eval()
    rows = [e.item for e in data.examples] + [p.chosen for p in data.pairs] + [p.rejected for p in data.pairs]
    logits = run_all(model_fn(net, encode, pad_id, dev), rows, encode, batch_size, bf16_on=bf16_on).tolist()
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


def run_all(fn: Callable[[list[Any]], torch.Tensor], items: list[Any], encode: Cache, batch_size: int, *,
            bf16_on: str | None = None) -> torch.Tensor:
    """fn(items) over all items in length-sorted batches, results in item order (on CPU, fp32);
    `bf16_on` ("cpu", "cuda"): under bfloat16 autocast there (no gradients flow here, so only these numbers change)."""
    encoded = encode(items)
    order = sorted(range(len(items)), key=lambda i: len(encoded[i].ids))
    parts = []
    precision = torch.autocast(bf16_on, dtype=torch.bfloat16) if bf16_on else contextlib.nullcontext()
    with torch.inference_mode(), precision:
        for start in range(0, len(order), batch_size):
            parts.append(fn([items[i] for i in order[start : start + batch_size]]).float().cpu())
    out = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return out[inverse].clone()  # clone: leave inference mode, so the probe can train on it


def probe(
    net: RewardNet, data: Dataset, encode: Cache, pad_id: int, dev: torch.device, steps: int, batch_size: int, mean_n: float,
    *, bf16_on: str | None = None,
) -> float:
    """Fit the head alone on frozen pooled features, then fine-tune (LP-FT: Kumar et al., ICLR 2022).

    A fresh head trained jointly with the encoder needs many steps to find its
    direction and meanwhile pushes noise into the encoder; on cached features
    hundreds of full-batch head steps cost less than one epoch of fine-tuning.
    `bf16_on`: the features are computed in bfloat16 autocast (see `run_all`; the head's steps stay fp32).
    """
    net.eval()
    items = [e.item for e in data.examples] + [p.chosen for p in data.pairs] + [p.rejected for p in data.pairs]
    feats = run_all(model_fn(net, encode, pad_id, dev, "embed"), items, encode, batch_size, bf16_on=bf16_on).to(dev)  # (N + 2M, H)
    n, m = len(data.examples), len(data.pairs)
    target = torch.tensor([e.label for e in data.examples], device=dev)
    weight = torch.tensor([e.count / mean_n for e in data.examples], device=dev)
    optimizer = torch.optim.Adam(net.head.parameters(), lr=1e-2, **adam_options(dev))
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
