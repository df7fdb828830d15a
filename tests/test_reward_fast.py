"""The reward model's CPU paths: fast="auto" measures and keeps a path that ranks like fp32;
the ONNX Runtime path is exported from the model's own weights and scores like fp32.

Correctness only: which path is fastest depends on the machine, so no test asserts a speed
(benchmarks/reward_throughput.py measures them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trajgraph.errors import ConfigError
from trajgraph.reward import LocalRewardModel, RewardItem, _net, _onnx, _paths, init_model
from trajgraph.reward.metrics import spearman


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model(tmp_path_factory.mktemp("rm") / "rm", max_length=64)


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One export for the module, in a folder of its own (never the user's cache)."""
    root = tmp_path_factory.mktemp("cache")
    before = os.environ.get("TRAJGRAPH_CACHE")
    os.environ["TRAJGRAPH_CACHE"] = str(root)
    yield root
    if before is None:
        del os.environ["TRAJGRAPH_CACHE"]
    else:
        os.environ["TRAJGRAPH_CACHE"] = before


def items(n: int) -> list[RewardItem]:
    out = []
    for i in range(n):
        turns = tuple((f"go {['north', 'south', 'east'][(i + k) % 3]} {k}", f"room {i % 7}.{k}: " + "a door " * (1 + (i * k) % 5))
                      for k in range(1 + i % 6))
        out.append(RewardItem(f"task {i % 5}: reach the tower", turns, f"take key {i}" if i % 3 else None))
    return out


# -- fast="auto" ----------------------------------------------------------------------------


def test_auto_leaves_onnx_out_until_the_model_was_exported(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJGRAPH_CACHE", str(tmp_path / "empty"))
    _paths._choices.clear()
    rm = LocalRewardModel(model_dir, device="cpu", fast="auto")
    assert rm.probe is not None and set(rm.probe.spearman) == {"fp32", "bf16", "int8"}
    assert not (tmp_path / "empty").exists()  # auto exported nothing, wrote nothing
    _paths._choices.clear()


def test_auto_measures_every_path_and_keeps_one_that_ranks_like_fp32(model_dir: Path) -> None:
    _paths._choices.clear()
    LocalRewardModel(model_dir, device="cpu", fast="onnx-int8")  # exported once (fp32 graph kept): now ONNX Runtime int8 competes too
    rm = LocalRewardModel(model_dir, device="cpu", fast="auto")
    probe = rm.probe
    assert probe is not None
    # all four built and checked here; ONNX Runtime fp32 never competes (it can win the short probe and lose
    # on real batches), even with its graph exported (fast="onnx-int8" keeps the fp32 export)
    assert set(probe.spearman) == {"fp32", "bf16", "int8", "onnx-int8"}
    assert probe.unavailable == {}
    # timed: exactly the paths that rank like fp32
    assert set(probe.items_per_s) == {p for p, rho in probe.spearman.items() if rho >= _paths.AGREEMENT}
    assert all(rate > 0 for rate in probe.items_per_s.values())
    assert probe.spearman["fp32"] == 1.0 and probe.spearman["bf16"] >= _paths.AGREEMENT
    assert probe.spearman[probe.chosen] >= _paths.AGREEMENT
    # never a path slower than fp32 as measured, and only with a clear margin
    assert probe.chosen == "fp32" or probe.items_per_s[probe.chosen] >= _paths.MARGIN * probe.items_per_s["fp32"]
    assert rm.fast == (None if probe.chosen == "fp32" else probe.chosen)
    assert probe.chosen in probe.describe() and "fp32" in probe.describe()
    # the path it kept ranks a larger, different set of items as fp32 does
    batch = items(60)
    rho = spearman(LocalRewardModel(model_dir, device="cpu").logits(batch), rm.logits(batch))
    assert rho >= _paths.AGREEMENT, f"auto ({probe.chosen}) Spearman {rho:.4f}"


def test_auto_choice_is_measured_once_per_process_and_model(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _paths._choices.clear()
    calls: list[list[str]] = []
    real = _paths.measure

    def counting(net, pad_id, encoder, path, candidates):
        calls.append(list(candidates))
        return real(net, pad_id, encoder, path, candidates)

    monkeypatch.setattr(_paths, "measure", counting)
    first = LocalRewardModel(model_dir, device="cpu", fast="auto")
    again = LocalRewardModel(model_dir, device="cpu", fast="auto")
    assert len(calls) == 1 and again.probe is first.probe and again.fast == first.fast
    LocalRewardModel(model_dir, device="cpu", fast="auto", max_length=32)  # other settings: measured anew
    assert len(calls) == 2


class _Fake:
    """Extra candidates for the selection rule: instant runners that agree with fp32, or not."""

    def __init__(self, real_build):
        self.real_build = real_build

    def __call__(self, path, net, pad_id, model_dir, max_length):
        fp32, module = self.real_build("fp32", net, pad_id, model_dir, max_length)
        reference: dict[int, list[float]] = {}

        def remembered(batch):
            key = id(batch)
            if key not in reference:
                reference[key] = fp32(batch)
            return reference[key]

        if path == "fast-agreeing":  # fp32's own answers, from memory after the first call
            return remembered, module
        if path == "fast-reversed":  # instant, but ranks everything backwards
            return (lambda batch: [-x for x in remembered(batch)]), module
        return self.real_build(path, net, pad_id, model_dir, max_length)


def test_a_fast_path_that_ranks_differently_is_never_chosen(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_paths, "build", _Fake(_paths.build))
    loaded = _net.load(model_dir)
    probe = _paths.measure(loaded.net, loaded.pad_id, loaded.encoder, model_dir, ["fp32", "fast-reversed"])
    assert probe.spearman["fast-reversed"] < 0 and probe.chosen == "fp32"
    assert "fast-reversed" not in probe.items_per_s  # ranks differently: not even timed
    assert "fast-reversed not timed" in probe.describe()
    probe = _paths.measure(loaded.net, loaded.pad_id, loaded.encoder, model_dir, ["fp32", "fast-reversed", "fast-agreeing"])
    assert probe.chosen == "fast-agreeing" and probe.spearman["fast-agreeing"] == pytest.approx(1.0)


def test_a_path_that_cannot_be_built_is_reported_not_fatal(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _paths.build

    def failing(path, *args):
        if path == "int8":
            raise ConfigError("no quantized engine on this CPU")
        return real(path, *args)

    monkeypatch.setattr(_paths, "build", failing)
    loaded = _net.load(model_dir)
    probe = _paths.measure(loaded.net, loaded.pad_id, loaded.encoder, model_dir, ["fp32", "int8"])
    assert probe.unavailable == {"int8": "ConfigError: no quantized engine on this CPU"}
    assert probe.chosen == "fp32" and set(probe.items_per_s) == {"fp32"}


def test_int8_copy_leaves_the_fp32_net_unchanged(model_dir: Path) -> None:
    import torch

    loaded = _net.load(model_dir)
    quantized = _net.quantize_int8(loaded.net)
    assert quantized is not loaded.net and quantized.head is loaded.net.head
    assert all(type(m) is not torch.nn.Linear for m in quantized.encoder.modules())
    assert any(type(m) is torch.nn.Linear for m in loaded.net.encoder.modules())  # auto still has its fp32 reference


def test_cpu_info_names_the_cpu_and_its_flags() -> None:
    info = _paths.cpu_info()
    assert info["cpu"] and isinstance(info["flags"], list)
    assert info["torch_capability"] in ("DEFAULT", "AVX2", "AVX512", "SVE256", "ZVECTOR", "NO AVX") or info["torch_capability"]
    assert info["threads"] >= 1


# -- ONNX Runtime ----------------------------------------------------------------------------


def test_onnx_export_scores_like_torch_fp32(model_dir: Path, tmp_path: Path) -> None:
    loaded = _net.load(model_dir)
    path = tmp_path / "model.onnx"
    _onnx.export(loaded.net, path)
    run = _onnx.session_runner(path, threads=1)
    batch = loaded.encoder.encode(items(24))
    import torch

    inputs = _net.collate(batch, loaded.pad_id, torch.device("cpu"))
    expected = _paths.torch_runner(loaded.net, loaded.pad_id)(batch)
    got = run({k: v.numpy() for k, v in inputs.items()})
    assert got == pytest.approx(expected, abs=1e-4)  # the same graph, the same weights: fp32 round-off only


def test_onnx_int8_path_ranks_like_fp32_and_is_cached(model_dir: Path, onnx_cache: Path) -> None:
    rm = LocalRewardModel(model_dir, device="cpu", fast="onnx-int8")
    assert rm.fast == "onnx-int8" and rm._net is None and "onnx-int8" in repr(rm)
    cached = onnx_cache / "onnx" / _onnx.model_key(model_dir, 64) / "model-int8.onnx"
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    batch = items(60)
    fp32 = LocalRewardModel(model_dir, device="cpu").logits(batch)
    int8 = rm.logits(batch)
    assert max(abs(a - b) for a, b in zip(fp32, int8)) < 0.1  # int8 weights: close, not exact
    assert spearman(fp32, int8) >= 0.8
    again = LocalRewardModel(model_dir, device="cpu", fast="onnx-int8")
    assert cached.stat().st_mtime_ns == stamp  # loaded from the cache, not exported again
    assert again.logits(batch) == pytest.approx(int8, abs=1e-6)


def test_onnx_fp32_path_scores_like_torch_fp32_and_int8_is_quantized_from_its_export(model_dir: Path, onnx_cache: Path) -> None:
    rm = LocalRewardModel(model_dir, device="cpu", fast="onnx-fp32")
    assert rm.fast == "onnx-fp32" and rm._net is None
    folder = onnx_cache / "onnx" / _onnx.model_key(model_dir, 64)
    fp32_graph = folder / "model.onnx"
    assert fp32_graph.is_file()
    batch = items(40)
    expected = LocalRewardModel(model_dir, device="cpu").logits(batch)
    assert rm.logits(batch) == pytest.approx(expected, abs=1e-4)  # fp32 round-off only, unlike int8
    stamp = fp32_graph.stat().st_mtime_ns
    LocalRewardModel(model_dir, device="cpu", fast="onnx-int8")
    assert (folder / "model-int8.onnx").is_file() and fp32_graph.stat().st_mtime_ns == stamp  # quantized from the kept export


def test_onnx_cache_key_follows_the_weights(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(model_dir, tmp_path / "rm")
    key = _onnx.model_key(copy, 64)
    assert _onnx.model_key(copy, 64) == key and _onnx.model_key(copy, 32) != key
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0x01  # one weight bit: another model, another export
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert _onnx.model_key(copy, 64) != key


def test_onnx_quantization_leaves_the_root_logger_alone(model_dir: Path, tmp_path: Path) -> None:
    import logging

    root = logging.getLogger()
    handlers, filters = list(root.handlers), list(root.filters)
    loaded = _net.load(model_dir)
    src = tmp_path / "m.onnx"
    _onnx.export(loaded.net, src)
    _onnx.quantize(src, tmp_path / "m8.onnx")
    assert (tmp_path / "m8.onnx").stat().st_size < src.stat().st_size / 2  # int8 weights: a quarter of fp32's bytes
    assert root.handlers == handlers and root.filters == filters


def test_scores_are_kept_by_content(model_dir: Path) -> None:
    """An item scored before is not run again (issue 20): the same logit comes back, the model runs
    only the new items, and cache_size=0 turns it off."""
    import asyncio

    items = [RewardItem(f"task {i}", (("go north", f"room {i}"),), "open door") for i in range(6)]
    rm = LocalRewardModel(model_dir)
    ran: list[int] = []
    inner = rm._run
    def counted(batch: Any) -> Any:  # count what reaches the real model
        ran.append(len(batch))
        return inner(batch)

    rm._run = counted
    first = rm.logits(items[:4])
    again = rm.logits(items)  # four known, two new
    assert again[:4] == first and ran == [4, 2]
    assert asyncio.run(rm.ascore(items[::-1])) == rm.score(items)[::-1] and ran == [4, 2]
    off = LocalRewardModel(model_dir, cache_size=0)
    # the same values up to float noise (a batch of six pads differently from batches of four and two)
    assert off.logits(items) == pytest.approx(again, abs=1e-5) and off._memo == {}
    rm.close()
    off.close()


def test_auto_needs_most_rounds_not_one_lucky_one(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A path that beat fp32 in one probe round only (the load dropped while it ran) is not chosen:
    `auto` must never be slower than fp32 on the machine (issue 20)."""
    import time as _time

    real = _paths.build

    def build(path: Any, *args: Any) -> Any:
        run, module = real("fp32", *args)
        calls = [0]

        first: list[list[float]] = []

        def timed(batch: Any) -> Any:
            calls[0] += 1
            if not first:  # the warm-up runs the model (its logits are what the rank check compares) ...
                first.append(run(batch))
            out = first[0]  # ... and the timed rounds take only the time set here
            if path == "fp32":
                _time.sleep(0.03)
            elif calls[0] != 2:  # "lucky": call 1 is the warm-up; fast only in the first timed round
                _time.sleep(0.1)
            return out

        return timed, module

    monkeypatch.setattr(_paths, "build", build)
    loaded = _net.load(model_dir)
    probe = _paths.measure(loaded.net, loaded.pad_id, loaded.encoder, model_dir, ["fp32", "lucky"])
    assert probe.items_per_s["lucky"] >= _paths.MARGIN * probe.items_per_s["fp32"]  # its best round won...
    assert probe.chosen == "fp32"  # ...but one round of three is not enough
