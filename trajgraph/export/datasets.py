"""Training data out of a store: TRL datasets for SFT, DPO and process reward models.

Every function reads one consistent snapshot of the store (`snapshot()`: a
read-only SQLite connection inside one read transaction), so a store being
written while we read gives the state at one instant, never half a batch. Column
names are TRL's (https://huggingface.co/docs/trl/dataset_formats):

- `sft_dataset`  -> conversational language modeling: `messages` (+ `tools` when recorded)
- `dpo_dataset`  -> preference: `prompt`, `chosen`, `rejected` (+ `chosen_score`, `rejected_score`)
- `prm_dataset`  -> stepwise supervision: `prompt`, `completions`, `labels`

Extra columns (`run_id`, `task`, `source`, ...) say where each row came from;
TRL's trainers ignore them. `write_dataset` writes JSON Lines or Parquet that
`datasets.load_dataset("json" | "parquet", data_files=...)` loads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.export._write import write_dataset
from trajgraph.export.chat import chat_message, conversations, state_messages, turns_messages
from trajgraph.export.read import RunFilter, as_number, effective_outcome, snapshot
from trajgraph.render import render_action, render_prefix, render_task, steps_to_turns
from trajgraph.store import Store
from trajgraph.store.json import to_jsonable
from trajgraph.store.text import utf8_data
from trajgraph.trajectory import Run, SearchNode, Step

SFT_COLUMNS = ("messages",)
DPO_COLUMNS = ("prompt", "chosen", "rejected", "chosen_score", "rejected_score", "source", "run_id", "task")
PRM_COLUMNS = ("prompt", "completions", "labels", "run_id", "task")


# -- SFT ----------------------------------------------------------------------------------


def sft_dataset(
    store: Store | str | Path,
    *,
    success_threshold: float | None = 1.0,
    status: str | None = "succeeded",
    **filters: Any,
) -> list[dict[str, Any]]:
    """Successful trajectories as TRL conversational rows: `{"messages": [...], ...}`.

    Runs with recorded model calls give the calls as they were (tool calls and tool
    results included); runs without them (a search's rollouts) give their message
    state, or for env loops task / action / observation turns. A run succeeds when its status matches `status` and its
    outcome (if known) is at least `success_threshold` (None: ignore outcomes).
    Search runs are containers and are skipped unless `kind="search"` is asked for.
    """
    rf = RunFilter.of(status=status, **filters)
    rows: list[dict[str, Any]] = []
    with snapshot(store) as db:
        for run in rf.runs(db, exclude_kinds=("search",)):
            steps = db.steps(run.id)
            outcome = effective_outcome(run, steps)
            if success_threshold is not None and outcome is not None and outcome < success_threshold:
                continue
            calls = db.model_calls(run.id)
            chats = conversations(calls) or ([_messages(run, steps)] if steps else [])
            tools = next((c.params["tools"] for c in calls if isinstance(c.params.get("tools"), list)), None)
            for messages in chats:
                row = {"messages": messages, "run_id": run.id, "task": run.task, "outcome": outcome}
                if tools is not None:
                    row["tools"] = tools
                rows.append(row)
    return utf8_data(rows)  # text as UTF-8 holds it (trajgraph.store.text)


def _messages(run: Run, steps: Sequence[Step]) -> list[dict[str, Any]]:
    """A run without model calls: its message state if it is a message agent, else env turns."""
    return state_messages(run, steps) or turns_messages(run, steps)


# -- DPO ----------------------------------------------------------------------------------

_STYLES = ("conversational", "standard")


def dpo_dataset(
    store: Store | str | Path,
    *,
    sources: Sequence[str] | None = None,
    style: str = "conversational",
    trajectory_pairs: bool = True,
    success_threshold: float = 1.0,
    **filters: Any,
) -> list[dict[str, Any]]:
    """Preference rows `{"prompt", "chosen", "rejected", "chosen_score", "rejected_score", ...}`.

    Two kinds of pairs:
    - step pairs from the `pairs` table, which RRO, MCTS and best-of-n fill (same
      prefix, the chosen candidate vs one it beat), filtered by their search run;
    - trajectory pairs (ETO, Song et al. 2024, "Trial and Error"): for each task,
      every failed run (outcome below `success_threshold`) against the best
      successful run of the same `Run.task`; `source="eto"`.
    `style="conversational"` gives message lists (what SFT rows use),
    `"standard"` gives text.  `sources` limits the `source` column.
    """
    if style not in _STYLES:
        raise ConfigError(f"style={style!r}; one of {', '.join(_STYLES)}")
    if isinstance(sources, str):
        sources = [sources]
    rf = RunFilter.of(**filters)
    rows: list[dict[str, Any]] = []
    with snapshot(store) as db:
        allowed = {r.id: r for r in rf.runs(db)}
        for pair in db.pairs():
            if pair.run_id not in allowed or (sources is not None and pair.source not in sources):
                continue
            task, history = _prefix(pair.prompt)
            rows.append({
                "prompt": _prompt(task, history, style, pair.prompt),
                "chosen": _completion(pair.chosen, style),
                "rejected": _completion(pair.rejected, style),
                "chosen_score": pair.chosen_score,
                "rejected_score": pair.rejected_score,
                "source": pair.source,
                "run_id": pair.run_id,
                "task": pair.task,
            })
        if trajectory_pairs and (sources is None or "eto" in sources):
            rows.extend(_eto_pairs(db, [r for r in allowed.values() if r.kind != "search"], style, success_threshold))
    return utf8_data(rows)  # text as UTF-8 holds it (trajgraph.store.text)


def _prefix(prompt: Any) -> tuple[str, list[tuple[str, str]]]:
    if isinstance(prompt, dict) and "task" in prompt:
        history = [(str(a), str(o or "")) for a, o in prompt.get("history") or []]
        return str(prompt["task"]), history
    return (prompt if isinstance(prompt, str) else render_task(prompt)), []


def _prompt(task: str, history: Sequence[tuple[str, str]], style: str, raw: Any) -> Any:
    if isinstance(raw, list):  # stored as messages already
        messages = [chat_message(m) for m in raw]
        return messages if style == "conversational" else "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    if style == "standard":
        return render_prefix(task, history) + f"\n[{len(history) + 1}] Action:"
    messages = [{"role": "user", "content": task}]
    for action, observation in history:
        messages.append({"role": "assistant", "content": action})
        if observation:
            messages.append({"role": "user", "content": observation})
    return messages


def _completion(side: Any, style: str) -> Any:
    """One side of a pair: the action as assistant message(s), or its text."""
    action = side.get("action") if isinstance(side, dict) and ("action" in side or "text" in side) else side
    text = str(side["text"]) if isinstance(side, dict) and side.get("text") else render_action(action)
    if style == "standard":
        return " " + text
    data = to_jsonable(action)
    if isinstance(data, dict) and "messages" in data:  # a message agent's update: keep its tool calls
        msgs = data["messages"] if isinstance(data["messages"], list) else [data["messages"]]
        out = [chat_message(m) for m in msgs]
        for m in out:
            m["role"] = "assistant"
        return out
    return [{"role": "assistant", "content": text}]


def _eto_pairs(db: Store, runs: Sequence[Run], style: str, threshold: float) -> list[dict[str, Any]]:
    by_task: dict[tuple[str, str], list[tuple[float, Run, list[Step]]]] = {}
    for run in runs:
        if run.task is None:
            continue
        steps = db.steps(run.id)
        outcome = effective_outcome(run, steps)
        if outcome is not None and steps:  # one task id in two graphs is two tasks
            by_task.setdefault((run.graph, run.task), []).append((outcome, run, steps))
    rows = []
    for (_, task), items in by_task.items():
        wins = [i for i in items if i[0] >= threshold]
        if not wins:
            continue
        best = max(wins, key=lambda i: (i[0], i[1].started_at))
        chosen_prompt, chosen = _split(db, best[1], best[2], style)
        for outcome, run, steps in items:
            if outcome >= threshold:
                continue
            _, rejected = _split(db, run, steps, style)
            rows.append({
                "prompt": chosen_prompt, "chosen": chosen, "rejected": rejected,
                "chosen_score": best[0], "rejected_score": outcome,
                "source": "eto", "run_id": run.id, "task": task,
            })
    return rows


def _split(db: Store, run: Run, steps: Sequence[Step], style: str) -> tuple[Any, Any]:
    """A whole trajectory as (prompt, completion): everything before the first assistant turn is prompt."""
    chats = conversations(db.model_calls(run.id))
    messages = chats[-1] if chats else _messages(run, steps)
    cut = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
    prompt, completion = messages[:cut], messages[cut:]
    if style == "conversational":
        return prompt, completion
    task = "\n".join(m["content"] for m in prompt)
    lines = [_step_text(i, a, o) for i, (a, o) in enumerate(steps_to_turns(steps), 1)]
    return f"Task: {task}", "".join("\n" + line for line in lines)


# -- PRM ----------------------------------------------------------------------------------

_LABELS = ("value", "score")


def prm_dataset(
    store: Store | str | Path,
    *,
    label: str = "value",
    threshold: float = 0.5,
    score: Callable[[list[str]], Sequence[float]] | None = None,
    **filters: Any,
) -> list[dict[str, Any]]:
    """Stepwise supervision rows `{"prompt", "completions", "labels"}` for TRL's PRMTrainer.

    From search trees (default): one row per root-to-leaf path of every search run;
    a step's label is `node.value >= threshold` (`label="value"`: the optimizer's
    backed-up / Monte Carlo value; a terminal without one uses its outcome, any
    other node the mean outcome of the finished trajectories below it, the soft
    Monte Carlo label of Math-Shepherd, Wang et al. 2024) or `node.score >= threshold`
    (`label="score"`: the reward model's score recorded during search; terminals
    fall back to their outcome). Invalid actions are labelled False. A path stops
    before the first node with nothing to label.

    With `score=`, a reward model scores recorded runs instead: each decision step
    of every matching non-search run is labelled `score(text) >= threshold`, where
    text is the task, the turns so far and the step (`render_prefix`).
    Texts match what trajgraph's reward models read: prompt `Task: ...`, each
    completion `[i] Action: ...` + `[i] Observation: ...`; TRL joins them with "\\n".
    """
    if label not in _LABELS:
        raise ConfigError(f"label={label!r}; one of {', '.join(_LABELS)}")
    threshold = as_number("threshold", threshold)  # type: ignore[assignment]
    rf = RunFilter.of(**filters)
    with snapshot(store) as db:
        if score is not None:
            return utf8_data(_scored_rows(db, rf.runs(db, exclude_kinds=("search",)), score, threshold))
        rows = []
        for run in rf.runs(db):
            nodes = db.search_nodes(run.id)
            if nodes:
                rows.extend(_tree_rows(run, nodes, label, threshold))
        return utf8_data(rows)


def _step_text(i: int, action: str, observation: str) -> str:
    return f"[{i}] Action: {action}" + (f"\n[{i}] Observation: {observation}" if observation else "")


def _tree_rows(run: Run, nodes: Sequence[SearchNode], label: str, threshold: float) -> list[dict[str, Any]]:
    children: dict[int | None, list[SearchNode]] = {}
    by_id = {n.id: n for n in nodes}
    for node in nodes:
        children.setdefault(node.parent_id if node.parent_id in by_id else None, []).append(node)
    mc = _rollout_means(nodes, children)
    task_text = f"Task: {render_task(run.input)}"
    rows = []
    for root in children.get(None, []):
        prompt = task_text
        if root.observation and root.observation not in prompt:
            prompt += f"\n{root.observation}"
        stack: list[tuple[SearchNode, list[SearchNode]]] = [(root, [])]
        while stack:
            node, path = stack.pop()
            kids = children.get(node.id, [])
            if not kids and path:
                steps, labels = [], []
                for i, n in enumerate(path, 1):
                    value = _node_label_value(n, label, mc)
                    if value is None and not n.invalid:
                        break
                    steps.append(_step_text(i, n.action_text, n.observation))
                    labels.append(False if n.invalid else bool(value >= threshold))  # type: ignore[operator]
                if steps:
                    rows.append({"prompt": prompt, "completions": steps, "labels": labels,
                                 "run_id": run.id, "task": run.task, "node_ids": [n.id for n in path[: len(steps)]]})
            for kid in reversed(kids):
                stack.append((kid, [*path, kid]))
    return rows


def _rollout_means(nodes: Sequence[SearchNode], children: dict[int | None, list[SearchNode]]) -> dict[int, float]:
    """Mean outcome of the finished trajectories below each node: the Monte Carlo
    estimate (Math-Shepherd's soft label) for nodes the optimizer did not value."""
    sums: dict[int, tuple[float, int]] = {}
    for node in sorted(nodes, key=lambda n: -n.depth):  # children before parents
        total, count = (node.outcome, 1) if node.terminal and node.outcome is not None else (0.0, 0)
        for kid in children.get(node.id, []):
            t, c = sums.get(kid.id, (0.0, 0))
            total, count = total + t, count + c
        sums[node.id] = (total, count)
    return {i: t / c for i, (t, c) in sums.items() if c}


def _node_label_value(node: SearchNode, label: str, mc: dict[int, float]) -> float | None:
    if label == "score":
        value = node.score
        return node.outcome if value is None and node.terminal else value
    if node.value is not None:
        return node.value
    if node.terminal and node.outcome is not None:
        return node.outcome
    return mc.get(node.id)


def _scored_rows(db: Store, runs: Sequence[Run], score: Callable[[list[str]], Sequence[float]], threshold: float) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        turns = steps_to_turns(db.steps(run.id))
        if not turns:
            continue
        task = render_task(run.input)
        texts = [render_prefix(task, turns[: i + 1]) for i in range(len(turns))]
        values = list(score(texts))
        if len(values) != len(texts):
            raise ConfigError(f"score() returned {len(values)} values for {len(texts)} texts; it must return one per text")
        rows.append({
            "prompt": f"Task: {task}",
            "completions": [_step_text(i, a, o) for i, (a, o) in enumerate(turns, 1)],
            "labels": [bool(v >= threshold) for v in values],
            "run_id": run.id, "task": run.task,
        })
    return rows


__all__ = [
    "sft_dataset",
    "dpo_dataset",
    "prm_dataset",
    "write_dataset",
    "snapshot",
    "RunFilter",
    "SFT_COLUMNS",
    "DPO_COLUMNS",
    "PRM_COLUMNS",
]
