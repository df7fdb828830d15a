"""Training internals that only change speed must not change results: the frozen-layer cache
(what frozen layers compute, kept per item for the whole run) and the fused Adam."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer

import trajgraph as tg
from trajgraph.reward import LocalRewardModel, RewardItem, _fit, _net, build_dataset, train
from trajgraph.reward.base import Formatter
from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tg.Store:
    store = tg.Store(tmp_path_factory.mktemp("fit") / "runs.db")
    for s in range(3):
        graph = tg.record(deceptive_chain_graph(depth=2, skill=0.5, trap=0.3, seed=30 + s), store=store, task=lambda st: st["task"])
        for _ in range(6):
            graph.invoke(chain_start(f"chain-{s}"))
    for run in store.runs():
        store.update_run(run.id, outcome=run.output["reward"])
    return store


@pytest.fixture(scope="module")
def backbone() -> tuple[_net.RewardNet, Tokenizer, int]:
    return _net.load_backbone(_net.default_backbone())


def items(n: int) -> list[RewardItem]:
    return [
        RewardItem(f"task {i % 3}", tuple((f"go {k}", "a room with doors " * (1 + (i + k) % 4)) for k in range(1 + i % 5)), f"open {i}")
        for i in range(n)
    ]


def frozen_net(backbone: tuple[_net.RewardNet, Tokenizer, int], n: int) -> tuple[_net.RewardNet, _fit.Cache, int]:
    import copy

    net, tokenizer, pad_id = backbone
    net = copy.deepcopy(net).eval()
    _net.freeze(net, n)
    return net, _fit.Cache(_net.TextEncoder(tokenizer, Formatter(), 48)), pad_id


@pytest.mark.parametrize("n_frozen", [3, 6])  # some layers still train; every layer frozen (the head alone trains)
def test_frozen_prefix_gives_the_full_forwards_logits_and_gradients(backbone, n_frozen: int) -> None:
    net, cache, pad_id = frozen_net(backbone, n_frozen)
    prefix = cache.frozen_prefix(net, pad_id, CPU)
    assert prefix is not None and prefix.n_frozen == n_frozen
    batch = items(10)  # lengths differ: padding and masks matter
    full = net(**_net.collate(cache(batch), pad_id, CPU))
    split = prefix.logits(batch)
    assert split.tolist() == pytest.approx(full.tolist(), abs=1e-5)
    full.sum().backward()
    expected = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    prefix.logits(batch).sum().backward()
    got = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert sorted(got) == sorted(expected) and "head.weight" in got
    assert all(not n.startswith(("encoder.embeddings", "encoder.encoder.layer.0.")) for n in got)  # frozen: no gradient
    for name, grad in got.items():
        assert torch.allclose(grad, expected[name], atol=1e-5), name


def test_frozen_states_are_computed_once_per_item(backbone, monkeypatch: pytest.MonkeyPatch) -> None:
    net, cache, pad_id = frozen_net(backbone, 4)
    prefix = cache.frozen_prefix(net, pad_id, CPU)
    assert prefix is not None
    embedded: list[int] = []
    real = prefix._embed

    def counted(inputs: Any) -> Any:
        embedded.append(len(inputs["input_ids"]))
        return real(inputs)

    monkeypatch.setattr(prefix, "_embed", counted)
    batch = items(8)
    first = prefix.logits(batch).tolist()
    assert embedded == [8] and len(prefix.kept) == 8
    again = prefix.logits(batch[2:] + batch[:2]).tolist()  # another epoch, another order
    assert embedded == [8]  # nothing recomputed
    assert again == pytest.approx(first[2:] + first[:2], abs=1e-6)
    assert cache.frozen_prefix(net, pad_id, CPU) is prefix  # one cache for the run


def test_over_the_memory_cap_states_are_recomputed_not_kept(backbone, monkeypatch: pytest.MonkeyPatch) -> None:
    net, cache, pad_id = frozen_net(backbone, 4)
    prefix = cache.frozen_prefix(net, pad_id, CPU)
    assert prefix is not None
    batch = items(6)
    expected = net(**_net.collate(cache(batch), pad_id, CPU)).tolist()
    monkeypatch.setattr(_fit, "PREFIX_BYTES", 20 * 384 * 4)  # room for about one item
    assert prefix.logits(batch).tolist() == pytest.approx(expected, abs=1e-5)
    assert len(prefix.kept) <= 1 and prefix.bytes <= _fit.PREFIX_BYTES


def test_nothing_frozen_means_no_prefix(backbone) -> None:
    net, cache, pad_id = frozen_net(backbone, 0)
    assert cache.frozen_prefix(net, pad_id, CPU) is None


def test_adam_is_fused_on_cpu(backbone) -> None:
    net, _, _ = frozen_net(backbone, 5)
    options = _fit.adam_options(CPU)
    assert options == {"fused": True}
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, **options)
    before = net.head.weight.detach().clone()
    net.head.weight.grad = torch.ones_like(net.head.weight)
    optimizer.step()
    assert optimizer.defaults["fused"] is True
    assert not torch.equal(before, net.head.weight.detach())


def test_training_with_the_cache_gives_the_model_training_without_it(store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings: dict[str, Any] = dict(epochs=2, probe_steps=30, max_length=48, freeze_layers=5, batch_size=8, val_fraction=0.34, seed=3, progress=False)
    cached = train(store, tmp_path / "cached", **settings)
    monkeypatch.setattr(_fit.FrozenPrefix, "of", classmethod(lambda cls, *a: None))  # the plain path, as before
    plain = train(store, tmp_path / "plain", **settings)
    assert [e.epoch for e in cached.epochs] == [e.epoch for e in plain.epochs] == [0, 1, 2]
    for a, b in zip(cached.epochs, plain.epochs):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-4)
        assert a.val_auc == pytest.approx(b.val_auc, abs=1e-3)
    data = build_dataset(store, "auto")
    batch = list(dict.fromkeys(e.item for e in data.examples))[:40]
    got = LocalRewardModel(tmp_path / "cached", device="cpu").logits(batch)
    want = LocalRewardModel(tmp_path / "plain", device="cpu").logits(batch)
    assert got == pytest.approx(want, abs=1e-3)
