"""benchmarks/learning_dagger.py's `--from-rounds`: the heads learn from the chosen rounds of a store only.

`keep_rounds` deletes, in a copy of the store, every run of another round and the runs under it
(a search's rollouts), and keeps untagged runs; `prune` is the same walk for any test of a run
(the value model reads its training split through `trajgraph.reward.train(tags=...)`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

import trajgraph as tg
from trajgraph.trajectory import Run


def _bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_dagger.py"
    monkeypatch.syspath_prepend(str(path.parent))  # its `from _table import emit`
    spec = importlib.util.spec_from_file_location("learning_dagger_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _store(path: Path) -> None:
    store = tg.Store(path)
    for rid, parent, tags in [("s0", None, ("round:0", "split:train")), ("r0", "s0", ("round:0", "split:train")),
                              ("s1", None, ("round:1", "split:train")), ("r1", "s1", ()), ("r1b", "r1", ()),
                              ("v0", None, ("round:0", "split:val")), ("plain", None, ())]:
        store.add_run(Run(id=rid, parent_id=parent, tags=tags, status="succeeded", kind="search" if parent is None else "rollout"))
    store.close()


def _ids(path: Path) -> set[str]:
    store = tg.Store(path)
    try:
        return {r.id for r in store.runs()}
    finally:
        store.close()


def test_keep_rounds_drops_other_rounds_and_the_runs_under_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench(monkeypatch)
    _store(tmp_path / "s.db")
    assert bench.keep_rounds(tmp_path / "s.db", {0}) == 3  # s1 and its rollouts r1, r1b (untagged themselves)
    assert _ids(tmp_path / "s.db") == {"s0", "r0", "v0", "plain"}
    _store(tmp_path / "t.db")
    assert bench.keep_rounds(tmp_path / "t.db", {0, 1}) == 0


def test_prune_keeps_the_training_split_for_the_value_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench(monkeypatch)
    _store(tmp_path / "s.db")
    assert bench.prune(tmp_path / "s.db", lambda run: "split:train" not in run.tags and run.parent_id is None) == 2
    assert _ids(tmp_path / "s.db") == {"s0", "r0", "s1", "r1", "r1b"}
