"""LocalRewardModel: loading, clear errors, truncation, batching of concurrent callers, no network.

Uses an untrained model (pretrained MiniLM encoder, random head) written by
`init_model`: loading, batching and truncation do not depend on training.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from trajgraph.errors import ConfigError, RewardModelError
from trajgraph.reward import LocalRewardModel, RewardItem, init_model
from trajgraph.reward.local import _Batcher

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_model(tmp_path_factory.mktemp("rm") / "rm", max_length=64)


@pytest.fixture(scope="module")
def rm(model_dir: Path) -> LocalRewardModel:
    return LocalRewardModel(model_dir, device="cpu")


def items(n: int, long: int = 0) -> list[RewardItem]:
    out = []
    for i in range(n):
        turns = tuple((f"act {i}.{k}", f"saw thing {k} " * (1 + (i + k) % 4)) for k in range(i % 5 + long))
        out.append(RewardItem(f"task {i}", turns, f"cand {i}" if i % 2 else None))
    return out


# -- loading and errors -----------------------------------------------------------------


def test_loads_on_cpu_in_fp32_and_reports_its_settings(rm: LocalRewardModel, model_dir: Path) -> None:
    assert str(rm.device) == "cpu" and rm.fast is None
    assert rm.max_length == 64 and rm.formatter.template == "prefix-v1"
    assert str(model_dir) in repr(rm)
    assert rm.score([]) == []
    scores = rm.score(items(5))
    assert len(scores) == 5 and all(0.0 < s < 1.0 for s in scores)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RewardModelError, match="no such reward model directory"):
        LocalRewardModel(tmp_path / "nowhere")


def test_file_instead_of_directory(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\x80\x04not a model")
    with pytest.raises(RewardModelError, match="is a directory"):
        LocalRewardModel(tmp_path / "model.bin")


def test_empty_directory_names_config_json(tmp_path: Path) -> None:
    with pytest.raises(RewardModelError, match=r"config\.json missing"):
        LocalRewardModel(tmp_path)


def test_plain_transformers_checkpoint_is_foreign() -> None:
    from trajgraph.reward._net import default_backbone

    with pytest.raises(RewardModelError, match="not a trajgraph reward model config.*backbone"):
        LocalRewardModel(default_backbone())


@pytest.mark.parametrize("missing", ["model.safetensors", "tokenizer.json"])
def test_missing_file_is_named(model_dir: Path, tmp_path: Path, missing: str) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "rm")
    (copy / missing).unlink()
    with pytest.raises(RewardModelError, match=f"missing {missing}"):
        LocalRewardModel(copy)


def test_damaged_config_and_weights(model_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "rm")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text("{not json")
    with pytest.raises(RewardModelError, match="not valid JSON"):
        LocalRewardModel(copy)
    (copy / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(RewardModelError, match="newer than this trajgraph"):
        LocalRewardModel(copy)
    smaller = {**config, "backbone": {**config["backbone"], "num_hidden_layers": 5}}
    (copy / "config.json").write_text(json.dumps(smaller))
    with pytest.raises(RewardModelError, match="weights do not match the config"):
        LocalRewardModel(copy)
    (copy / "config.json").write_text(json.dumps(config))
    (copy / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(RewardModelError, match="cannot read weights"):
        LocalRewardModel(copy)


def test_bad_options(model_dir: Path) -> None:
    with pytest.raises(ConfigError, match="fast="):
        LocalRewardModel(model_dir, fast="int4")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            LocalRewardModel(model_dir, device="cuda")


# -- text and truncation ------------------------------------------------------------------


def test_long_prefixes_lose_their_oldest_turns_not_the_task_or_candidate(rm: LocalRewardModel) -> None:
    turns = tuple((f"step{k}", f"observation number {k}") for k in range(40))
    tokens = rm.tokens(RewardItem("find the golden key", turns, "unlock chest"))
    assert len(tokens) == rm.max_length
    text = " ".join(tokens)
    assert tokens[0] == "[CLS]" and "golden key" in text  # the task's head survives
    assert text.endswith("unlock chest [SEP]")  # the candidate, newest of all, survives
    assert "39" in tokens and "step0" not in text.replace(" ##", "")  # newest turn kept, oldest cut
    short = rm.tokens(RewardItem("find the golden key", turns[:1]))
    assert len(short) < rm.max_length  # no padding inside one item


def test_batch_composition_does_not_change_scores(rm: LocalRewardModel) -> None:
    batch = items(12, long=3)
    together = rm.score(batch)
    alone = [rm.score([i])[0] for i in batch]
    assert together == pytest.approx(alone, abs=1e-5)


# -- batching of concurrent callers ---------------------------------------------------------


class _Gate:
    """Wraps the worker's forward: the first call (a blocker) waits until `n` requests are queued."""

    def __init__(self, batcher: _Batcher, n: int) -> None:
        self.batcher, self.n, self.first = batcher, n, True
        self.run = batcher._forward()
        self.sizes: list[int] = []

    def __call__(self, batch: list) -> list[float]:
        if self.first:
            self.first = False
            deadline = time.monotonic() + 30
            while len(self.batcher._queue) < self.n and time.monotonic() < deadline:
                time.sleep(0.005)
        self.sizes.append(len(batch))
        return self.run(batch)

    def block(self, rm: LocalRewardModel) -> Future[list[float]]:
        """Occupy the worker with a one-item request; return once the worker holds it."""
        self.batcher._run = self
        future = self.batcher.submit(rm._encoder.encode(items(1)))
        while self.batcher._queue:
            time.sleep(0.001)
        return future


def test_concurrent_threads_share_batches(model_dir: Path) -> None:
    rm = LocalRewardModel(model_dir, device="cpu", batch_size=64)
    per_caller = [items(4 + c)[c:] for c in range(8)]
    expected = [rm.score(chunk) for chunk in per_caller]
    gate = _Gate(rm._batcher, n=8)
    blocker = gate.block(rm)
    results: list[list[float] | None] = [None] * 8

    def caller(c: int) -> None:
        results[c] = rm.score(per_caller[c])

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    blocker.result(60)
    assert results == [pytest.approx(e, abs=1e-5) for e in expected]
    assert gate.sizes == [1, sum(len(c) for c in per_caller)]  # all eight callers in one forward pass


def test_asyncio_callers_share_batches(model_dir: Path) -> None:
    rm = LocalRewardModel(model_dir, device="cpu", batch_size=64)
    per_caller = [items(6 + c)[c:] for c in range(8)]
    expected = [rm.score(chunk) for chunk in per_caller]
    gate = _Gate(rm._batcher, n=8)
    blocker = gate.block(rm)

    async def main() -> list[list[float]]:
        return list(await asyncio.gather(*(rm.ascore(chunk) for chunk in per_caller)))

    assert asyncio.run(main()) == [pytest.approx(e, abs=1e-5) for e in expected]
    blocker.result(60)
    assert gate.sizes == [1, sum(len(c) for c in per_caller)]


def test_large_requests_are_split_into_length_sorted_batches(model_dir: Path) -> None:
    rm = LocalRewardModel(model_dir, device="cpu", batch_size=8)
    sizes: list[list[int]] = []
    real = rm._batcher._forward()

    def sized(batch: list) -> list[float]:
        sizes.append([len(e.ids) for e in batch])
        return real(batch)

    rm._batcher._run = sized
    batch = items(20, long=2)
    scores = rm.score(batch)
    assert [len(s) for s in sizes] == [8, 8, 4]
    flat = [n for s in sizes for n in s]
    assert flat == sorted(flat)  # sorted by length: each batch pads to its own longest item only
    assert scores == pytest.approx([rm.score([i])[0] for i in batch], abs=1e-5)


def test_worker_errors_reach_every_caller_and_the_worker_recovers(model_dir: Path) -> None:
    rm = LocalRewardModel(model_dir, device="cpu")
    real = rm._batcher._run

    def broken(batch: list) -> list[float]:
        raise RuntimeError("device fell over")

    rm._batcher._run = broken
    with pytest.raises(RuntimeError, match="device fell over"):
        rm.score(items(3))
    rm._batcher._run = real
    assert len(rm.score(items(3))) == 3


def test_scoring_thread_persists_between_calls_and_stops_with_the_model(model_dir: Path) -> None:
    import gc

    rm = LocalRewardModel(model_dir, device="cpu")
    rm.score(items(2))
    worker = rm._batcher._worker
    assert worker is not None and worker.is_alive() and worker.daemon
    time.sleep(2.5)  # longer than the old 2-second idle exit
    assert rm._batcher._worker is worker and worker.is_alive()
    assert len(rm.score(items(2))) == 2
    assert rm._batcher._worker is worker  # the same thread served the second call: no restart
    batcher = rm._batcher
    del rm
    gc.collect()
    worker.join(10)
    assert not worker.is_alive()  # dropping the model ends its thread: nothing left behind
    with pytest.raises(ConfigError, match="closed"):
        batcher.submit([])


def test_close_stops_the_thread_and_later_calls_say_so(model_dir: Path) -> None:
    rm = LocalRewardModel(model_dir, device="cpu")
    rm.score(items(1))
    worker = rm._batcher._worker
    assert worker is not None
    rm.close()
    worker.join(10)
    assert not worker.is_alive()
    with pytest.raises(ConfigError, match="closed; load it again"):
        rm.score(items(1))


# -- light import, no network, GPU ------------------------------------------------------------


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env
    )


def test_importing_the_reward_package_does_not_import_torch() -> None:
    done = _python(
        """
        import sys, trajgraph, trajgraph.reward
        print(sorted(m for m in ("torch", "transformers", "litellm", "safetensors") if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_network_access_is_attempted(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9", HF_HUB_OFFLINE="1", NO_PROXY="", no_proxy="")
    done = _python(
        f"""
        import json, socket
        attempts = []
        real_connect = socket.socket.connect
        def guarded(self, address):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                attempts.append(repr(address))
                raise OSError("network disabled by test")
            return real_connect(self, address)
        socket.socket.connect = guarded
        socket.create_connection = lambda address, *a, **k: guarded(socket.socket(), address)

        import trajgraph as tg
        from trajgraph.reward import LLMJudge, LocalRewardModel, RewardItem, train
        from trajgraph.testing.tiny_env import chain_start, deceptive_chain_graph

        store = tg.Store({str(tmp_path / "runs.db")!r})
        for seed in (1, 2):
            graph = tg.record(deceptive_chain_graph(depth=2, seed=seed), store=store, task=lambda s: s["task"])
            for _ in range(3):
                graph.invoke(chain_start(f"chain-{{seed}}"))
        for run in store.runs():
            store.update_run(run.id, outcome=run.output["reward"])
        out = {str(tmp_path / "rm")!r}
        train(store, out, epochs=1, probe_steps=10, max_length=32, freeze_layers=5, val_fraction=0.5, progress=False)
        scores = LocalRewardModel(out, fast="bf16").score([RewardItem("chain-1", (("left", "room 1"),))])
        judged = LLMJudge("openai/gpt-4o-mini", mock_response="Reflection: fine. Score: 6").score([RewardItem("t")])
        quiet = list(attempts)
        try:  # control: the guard does see a connection attempt
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        except OSError:
            pass
        print(json.dumps({{"attempts": quiet, "control": attempts[len(quiet):], "scores": scores, "judged": judged}}))
        """,
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    assert report["control"] == ["('127.0.0.1', 9)"]
    assert len(report["scores"]) == 1 and report["judged"] == [0.6]


@pytest.mark.gpu
def test_cuda_scores_in_bf16_and_rank_like_cpu(model_dir: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from trajgraph.reward.metrics import spearman

    gpu = LocalRewardModel(model_dir, device="auto")
    assert gpu.device.type == "cuda" and next(gpu._net.parameters()).dtype == torch.bfloat16
    batch = items(200, long=2)
    assert spearman(LocalRewardModel(model_dir, device="cpu").logits(batch), gpu.logits(batch)) >= 0.99
