"""LocalRewardModel: a trained reward model directory, scoring batches locally.

CUDA when present (bf16 weights, `torch.inference_mode`), CPU fp32 otherwise.
Faster CPU paths, chosen with `fast=`:

- "bf16": bf16 weights and activations, for CPUs with bf16 dot products
  (AVX512-BF16 or AMX: Zen 4, Sapphire Rapids and later). About 2.5-3x fp32 on
  such a CPU, and it ranks items as fp32 does (Spearman >= 0.999 in the tests).
  Elsewhere it still works, emulated and slower than fp32.
- "int8": dynamic int8 quantization of the encoder's Linear layers (fbgemm,
  VNNI). About as fast as bf16 and works on any x86 CPU, but coarser: each
  activation tensor gets one scale per batch, so a score shifts with its
  batch-mates, and a trained reward model, which separates near-identical
  prefixes by small feature differences, ranks only roughly as fp32 does
  (Spearman ~0.93-0.94 measured). Use it where bf16 is emulated and speed wins.
- "auto": "bf16" where the CPU has bf16 instructions, else plain fp32.

Concurrent callers (threads, or coroutines through `ascore`) are coalesced: each
call puts its items on a queue, one worker thread drains everything queued,
sorts it by length, runs it in batches padded to the longest item of each batch,
and hands every caller its own scores. Several searches in one process thus share
batches instead of taking turns with small ones.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.reward.base import Formatter, RewardItem

_FAST = (None, "auto", "bf16", "int8")


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
    ) -> None:
        if path is None:  # there is no useful default: an untrained head ranks at random
            raise ConfigError("LocalRewardModel() needs a model folder: train one with `trajgraph reward train --db runs.db --out rm/` "
                              "(or tg.reward.train), then LocalRewardModel('rm/'); tg.reward.init_model(path) writes an untrained one for wiring tests")
        if fast not in _FAST:
            raise ConfigError(f"fast={fast!r}: choose one of {list(_FAST)}")
        import torch

        from trajgraph.reward import _net

        self.path = Path(path)
        loaded = _net.load(self.path, max_length)  # raises RewardModelError naming what is missing
        self.device = _net.resolve_device(device)
        self.config: dict[str, Any] = loaded.config
        self._encoder = loaded.encoder
        self._pad_id = loaded.pad_id
        net = loaded.net
        if self.device.type == "cuda":
            # bf16 end to end: the encoder is tiny and the card's tensor cores want bf16.
            net = net.to(self.device, dtype=torch.bfloat16)
            self.fast: str | None = None  # the CPU options do not apply: bf16 already is the fast path
        else:
            if fast == "auto":
                fast = "bf16" if _net.cpu_has_bf16() else None
            if fast == "bf16":
                net = net.to(dtype=torch.bfloat16)
            elif fast == "int8":
                net = _net.quantize_int8(net)
            self.fast = fast
        self._net = net.eval()
        self.batch_size = int(batch_size or (512 if self.device.type == "cuda" else 32))
        self._batcher = _Batcher(self._forward, self.batch_size)

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
        future = self._batcher.submit(self._encoder.encode(list(items)))
        return [_sigmoid(x) for x in await asyncio.wrap_future(future)]

    def logits(self, items: Sequence[RewardItem]) -> list[float]:
        """Raw head outputs (the scores before the sigmoid): finer for ranking near 0 or 1."""
        if not items:
            return []
        return self._batcher.submit(self._encoder.encode(list(items))).result()

    def __repr__(self) -> str:
        fast = f", fast={self.fast!r}" if self.fast else ""
        return f"LocalRewardModel({str(self.path)!r}, device={str(self.device)!r}{fast})"

    # -- the worker's side ------------------------------------------------------------

    def _forward(self, batch: list[Any]) -> list[float]:
        import torch

        from trajgraph.reward import _net

        with torch.inference_mode():
            inputs = _net.collate(batch, self._pad_id, self.device)
            return self._net(**inputs).tolist()


def _sigmoid(x: float) -> float:
    # float64 on the Python side: a float32 sigmoid would flatten confident scores to exact 0/1 ties.
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class _Batcher:
    """A small batching queue: callers submit encoded items, one worker runs shared batches.

    The worker drains *everything* queued while it was busy, so under load the
    batches fill up by themselves, and a lone caller pays only a thread hand-off.
    It exits after `idle_s` without work (a dropped model leaves no thread behind)
    and is restarted by the next submit.
    """

    def __init__(self, run: Callable[[list[Any]], list[float]], batch_size: int, idle_s: float = 2.0) -> None:
        self._run = run
        self.batch_size = batch_size
        self.idle_s = idle_s
        self._cv = threading.Condition()
        self._queue: list[tuple[list[Any], Future[list[float]]]] = []
        self._worker: threading.Thread | None = None
        self.batches = 0  # forward passes run, for tests and benchmarks

    def submit(self, encoded: list[Any]) -> Future[list[float]]:
        future: Future[list[float]] = Future()
        with self._cv:
            self._queue.append((encoded, future))
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="trajgraph-reward", daemon=True)
                self._worker.start()
            self._cv.notify()
        return future

    def _loop(self) -> None:
        while True:
            with self._cv:
                if not self._queue:
                    self._cv.wait(self.idle_s)
                if not self._queue:
                    self._worker = None
                    return
                work, self._queue = self._queue, []
            self._serve(work)

    def _serve(self, work: list[tuple[list[Any], Future[list[float]]]]) -> None:
        flat = [(r, j) for r, (encoded, _) in enumerate(work) for j in range(len(encoded))]
        flat.sort(key=lambda rj: len(work[rj[0]][0][rj[1]].ids))  # similar lengths share a batch: less padding
        results: list[list[float]] = [[0.0] * len(encoded) for encoded, _ in work]
        try:
            for start in range(0, len(flat), self.batch_size):
                chunk = flat[start : start + self.batch_size]
                out = self._run([work[r][0][j] for r, j in chunk])
                self.batches += 1
                for (r, j), value in zip(chunk, out):
                    results[r][j] = value
        except BaseException as exc:  # every waiting caller hears about it, none hangs
            for _, future in work:
                _settle(future, exc=exc)
            return
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
