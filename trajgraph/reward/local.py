"""LocalRewardModel: a trained reward model directory, scoring batches locally.

CUDA when present (bf16 weights, `torch.inference_mode`), CPU fp32 otherwise.
Faster CPU paths, chosen with `fast=`:

- "auto": measure. Every path below is built and timed on one small probe
  batch at load; those that rank the batch as fp32 does (Spearman >= 0.98)
  compete, fp32 included, and the fastest wins, so auto is never slower than
  fp32 as measured on the machine it runs on. The probe takes about a second
  and is done once per process for a given model (`rm.probe` says what it
  measured). "onnx-int8" competes once the model was exported. See `_paths.py`.
- "bf16": bf16 weights and activations. Ranks items as fp32 does (Spearman
  >= 0.999). Fast with AMX (Sapphire Rapids and later); with AVX512-BF16 alone
  (Zen 4) it measured both above and below fp32, and emulated elsewhere it is slower.
- "int8": dynamic int8 quantization of the encoder's Linear layers (fbgemm,
  VNNI). Works on any x86 CPU, but coarser: each activation tensor gets one
  scale per batch, so a score shifts with its batch-mates, and a trained reward
  model, which separates near-identical prefixes by small feature differences,
  ranks only roughly as fp32 does (Spearman 0.68-0.94 measured).
- "onnx-fp32": the same model exported to ONNX (from its own safetensors, no
  download) and run by ONNX Runtime in fp32: fp32's scores to round-off, other kernels.
  Not one of auto's candidates: it can win auto's short probe and lose on real batches.
- "onnx-int8": that graph with int8 weights; same caveat as "int8".
  Needs `pip install 'trajgraph[onnx]'`; the export is cached on disk (`_onnx.py`).
- None or "fp32": plain fp32.

Concurrent callers (threads, or coroutines through `ascore`) are coalesced: each
call puts its items on a queue, one worker thread drains everything queued,
sorts it by length, runs it in batches padded to the longest item of each batch,
and hands every caller its own scores. Several searches in one process thus share
batches instead of taking turns with small ones. Scores are also kept by content (`cache_size`
items, default 100,000): an item scored before is not tokenized or run again (the
optimizers of a benchmark share tasks and states; a search revisits its prefixes). The worker lives as long as the
model (a daemon thread, no idle exit: restarting it cost the next call 11%).
"""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.reward.base import Formatter, RewardItem

_FAST = (None, "auto", "fp32", "bf16", "int8", "onnx-fp32", "onnx-int8")


class LocalRewardModel:
    """A reward model loaded from a directory written by `trajgraph.reward.train`.

    >>> rm = LocalRewardModel("rm/")
    >>> rm.score([RewardItem("find the key", (("go north", "a locked door"),), "open door")])
    [0.83]
    """

    def __init__(
        self,
        path: str | Path | None = None,
        device: str = "auto",
        fast: str | None = None,
        *,
        batch_size: int | None = None,
        max_length: int | None = None,
        cache_size: int = 100_000,
    ) -> None:
        if path is None:  # there is no useful default: an untrained head ranks at random
            raise ConfigError("LocalRewardModel() needs a model folder: train one with `trajgraph reward train --db runs.db --out rm/` "
                              "(or tg.reward.train), then LocalRewardModel('rm/'); tg.reward.init_model(path) writes an untrained one for wiring tests")
        if fast not in _FAST:
            raise ConfigError(f"fast={fast!r}: choose one of {list(_FAST)}")
        import torch

        from trajgraph.reward import _net, _paths

        self.path = Path(path)
        loaded = _net.load(self.path, max_length)  # raises RewardModelError naming what is missing
        self.device = _net.resolve_device(device)
        self.config: dict[str, Any] = loaded.config
        self._encoder = loaded.encoder
        self._pad_id = loaded.pad_id
        self.probe: _paths.Probe | None = None  # what fast="auto" measured
        net = loaded.net
        if self.device.type == "cuda":
            # bf16 end to end: the encoder is tiny and the card's tensor cores want bf16.
            net = net.to(self.device, dtype=torch.bfloat16).eval()
            run = _paths.torch_runner(net, self._pad_id, self.device)
            self.fast: str | None = None  # the CPU options do not apply: bf16 already is the fast path
        elif fast == "auto":
            self.probe, run, net = _paths.choose(net, self._pad_id, self._encoder, self.path)
            self.fast = None if self.probe.chosen == "fp32" else self.probe.chosen
        else:
            path_name = fast or "fp32"
            run, net = _paths.build(path_name, net, self._pad_id, self.path, self._encoder.max_length)
            self.fast = None if path_name == "fp32" else path_name
        self._net = net  # the torch module that runs (None on ONNX Runtime)
        self._run = run
        self.batch_size = int(batch_size or (512 if self.device.type == "cuda" else 32))
        self._batcher = _Batcher(weakref.WeakMethod(self._forward), self.batch_size)
        # item -> logit, by content: searches score the same states again (the optimizers of a benchmark
        # share tasks, a search revisits its prefixes), and a model's logit for an item does not change
        self.cache_size = cache_size
        self._memo: dict[RewardItem, float] = {}
        # the worker thread holds the batcher, not the model: a dropped model stops its thread
        weakref.finalize(self, self._batcher.close)

    # -- what callers use -----------------------------------------------------------

    @property
    def formatter(self) -> Formatter:
        return self._encoder.formatter

    @property
    def max_length(self) -> int:
        return self._encoder.max_length

    def text(self, item: RewardItem) -> str:
        """The exact text this model reads for `item` (before token truncation)."""
        return self.formatter.text(item)

    def tokens(self, item: RewardItem) -> list[str]:
        """The tokens the model reads for `item`, after truncation (the task's head, the newest turns)."""
        ids = self._encoder.encode([item])[0].ids
        return [self._encoder.tokenizer.id_to_token(i) or "" for i in ids]

    def score(self, items: Sequence[RewardItem]) -> list[float]:
        """Scores in (0, 1), higher is better; one per item, in order."""
        return [_sigmoid(x) for x in self.logits(items)]

    async def ascore(self, items: Sequence[RewardItem]) -> list[float]:
        if not items:
            return []
        memo, missing = self._lookup(items)
        if missing:
            self._remember(missing, await asyncio.wrap_future(self._batcher.submit(self._encoder.encode(missing))), memo)
        return [_sigmoid(memo[item]) for item in items]

    def logits(self, items: Sequence[RewardItem]) -> list[float]:
        """Raw head outputs (the scores before the sigmoid): finer for ranking near 0 or 1."""
        if not items:
            return []
        memo, missing = self._lookup(items)
        if missing:
            self._remember(missing, self._batcher.submit(self._encoder.encode(missing)).result(), memo)
        return [memo[item] for item in items]

    def _lookup(self, items: Sequence[RewardItem]) -> tuple[dict[RewardItem, float], list[RewardItem]]:
        """The logits known for `items` (a private dict for this call) and the distinct items still to run."""
        memo: dict[RewardItem, float] = {}
        missing: list[RewardItem] = []
        for item in items:
            if item in memo:
                continue
            known = self._memo.get(item)
            if known is None:
                memo[item] = math.nan
                missing.append(item)
            else:
                memo[item] = known
        return memo, missing

    def _remember(self, items: list[RewardItem], values: list[float], memo: dict[RewardItem, float]) -> None:
        for item, value in zip(items, values):
            memo[item] = value
        if self.cache_size > 0:
            if len(self._memo) + len(items) > self.cache_size:
                self._memo.clear()
            self._memo.update(zip(items, values))

    def __repr__(self) -> str:
        fast = f", fast={self.fast!r}" if self.fast else ""
        return f"LocalRewardModel({str(self.path)!r}, device={str(self.device)!r}{fast})"

    # -- the worker's side ------------------------------------------------------------

    def close(self) -> None:
        """Stop the scoring thread now (it also stops when the model is garbage-collected)."""
        self._memo.clear()  # a closed model answers nothing, cached or not
        self.cache_size = 0
        self._batcher.close()

    def _forward(self, batch: list[Any]) -> list[float]:
        return self._run(batch)


def _sigmoid(x: float) -> float:
    # float64 on the Python side: a float32 sigmoid would flatten confident scores to exact 0/1 ties.
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class _Batcher:
    """A small batching queue: callers submit encoded items, one worker runs shared batches.

    The worker drains *everything* queued while it was busy, so under load the
    batches fill up by themselves, and a lone caller pays only a thread hand-off.
    It is started by the first submit and waits, without a timeout, until
    `close()`; the model closes it when it is garbage-collected. `run` may be a
    `weakref.WeakMethod`, so the thread does not keep the model alive.
    """

    def __init__(self, run: Callable[[list[Any]], list[float]] | weakref.WeakMethod[Any], batch_size: int) -> None:
        self._run = run
        self.batch_size = batch_size
        self._cv = threading.Condition()
        self._queue: list[tuple[list[Any], Future[list[float]]]] = []
        self._worker: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # forward passes run, for tests and benchmarks

    def submit(self, encoded: list[Any]) -> Future[list[float]]:
        future: Future[list[float]] = Future()
        with self._cv:
            if self._closed:
                raise ConfigError("this LocalRewardModel was closed; load it again to score")
            self._queue.append((encoded, future))
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="trajgraph-reward", daemon=True)
                self._worker.start()
            self._cv.notify()
        return future

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:  # closed, nothing left to serve
                    self._worker = None
                    return
                work, self._queue = self._queue, []
            self._serve(work)

    def _forward(self) -> Callable[[list[Any]], list[float]]:
        run = self._run
        if isinstance(run, weakref.WeakMethod):
            target = run()
            if target is None:
                raise ConfigError("the LocalRewardModel behind this queue is gone; load it again to score")
            return target
        return run

    def _serve(self, work: list[tuple[list[Any], Future[list[float]]]]) -> None:
        flat = [(r, j) for r, (encoded, _) in enumerate(work) for j in range(len(encoded))]
        flat.sort(key=lambda rj: len(work[rj[0]][0][rj[1]].ids))  # similar lengths share a batch: less padding
        results: list[list[float]] = [[0.0] * len(encoded) for encoded, _ in work]
        try:
            run = self._forward()
            for start in range(0, len(flat), self.batch_size):
                chunk = flat[start : start + self.batch_size]
                out = run([work[r][0][j] for r, j in chunk])
                self.batches += 1
                for (r, j), value in zip(chunk, out):
                    results[r][j] = value
        except BaseException as exc:  # every waiting caller hears about it, none hangs
            for _, future in work:
                _settle(future, exc=exc)
            return
        finally:
            run = None  # type: ignore[assignment]  # no strong reference to the model between batches
        for (_, future), values in zip(work, results):
            _settle(future, values)


def _settle(future: Future[list[float]], values: list[float] | None = None, exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(values or [])
    except InvalidStateError:  # the caller cancelled (an asyncio task was cancelled)
        pass


__all__ = ["LocalRewardModel"]
