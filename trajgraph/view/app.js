// trajgraph view: vanilla JS over the JSON API of trajgraph/view/server.py.
// Every piece of trajectory text goes into the DOM as a text node (el() below),
// never through innerHTML, so recorded content cannot inject markup or script.
"use strict";

const state = { selected: new Set(), runs: [] };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (sel, root) => (root || document).querySelector(sel);
const fmt = (x) => (x === null || x === undefined ? "–" : typeof x === "number" ? String(Math.round(x * 1000) / 1000) : String(x));
const when = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "–");
const shortId = (id) => id.slice(-8);
function ago(ts) {
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return new Date(ts * 1000).toLocaleDateString();
}
const runHref = (id) => "#run=" + encodeURIComponent(id);

async function api(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function banner(message) {
  const b = $("#banner");
  b.textContent = message || "";
  b.hidden = !message;
}

// -- run list ---------------------------------------------------------------------------

function filterQuery() {
  const params = new URLSearchParams();
  for (const field of $("#filters").elements) {
    if (field.name && field.value !== "") params.set(field.name, field.value);
  }
  return params.toString();
}

function fillSelect(select, values) {
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, "any"), ...values.map((v) => el("option", { value: v }, v)));
  select.value = values.includes(current) ? current : "";
}

async function loadRuns() {
  let data;
  try {
    data = await api("/api/runs?" + filterQuery());
  } catch (err) {
    banner(err.message);
    return;
  }
  banner("");
  state.runs = data.runs;
  for (const name of ["graph", "status", "kind", "tag"]) fillSelect($(`#filters [name=${name}]`), data.facets[name]);
  const body = $("#runs tbody");
  body.replaceChildren(...data.runs.map(runRow));
  $("#runs-note").textContent = data.runs.length
    ? (data.total > data.runs.length ? `newest ${data.runs.length} of ${data.total} matching runs` : `${data.total} run(s)`)
    : "No runs match.";
  updateCompare();
}

function statusBadge(status) {
  return el("span", { class: "badge status-" + status }, status);
}

function runRow(run) {
  const box = el("input", {
    type: "checkbox", class: "pick", "aria-label": "select for comparison", checked: state.selected.has(run.id),
    onclick: (ev) => ev.stopPropagation(),
    onchange: (ev) => { ev.target.checked ? state.selected.add(run.id) : state.selected.delete(run.id); updateCompare(); },
  });
  return el("tr", { class: "run-row", "data-run-id": run.id, onclick: () => { location.hash = runHref(run.id); } },
    el("td", {}, box),
    el("td", { class: "mono", title: run.id }, shortId(run.id)),
    el("td", {}, run.graph),
    el("td", {}, run.kind),
    el("td", {}, statusBadge(run.status)),
    el("td", { class: "num" }, fmt(run.outcome)),
    el("td", { class: "num" }, run.n_nodes ? `${run.n_nodes} nodes` : run.n_steps),
    el("td", { title: when(run.started_at) }, ago(run.started_at)));
}

function updateCompare() {
  $("#selected-count").textContent = `${state.selected.size} selected`;
  $("#compare").disabled = state.selected.size !== 2;
}

// -- one run ----------------------------------------------------------------------------

function field(name, value) {
  return [el("dt", {}, name), el("dd", {}, value)];
}

function runHeader(run) {
  return el("div", { class: "run-header" },
    el("h2", {}, run.graph || "(graph)", " ", el("span", { class: "badge kind" }, run.kind), " ", statusBadge(run.status)),
    el("dl", {},
      field("id", el("span", { class: "mono" }, run.id)),
      field("task", run.task || "–"),
      field("outcome", fmt(run.outcome)),
      field("started", when(run.started_at)),
      field("latency", run.latency_s === null ? "–" : fmt(run.latency_s) + " s"),
      field("tags", run.tags.length ? run.tags.join(", ") : "–"),
      run.parent_id ? field("parent", el("a", { href: runHref(run.parent_id) }, shortId(run.parent_id))) : [],
      searchStats(run),
      run.error ? field("error", el("span", { class: "error" }, run.error)) : []));
}

// What a search run's optimizer says of itself (tg.search writes metadata.stats): how many nodes,
// how many reached a state already in its table (transpositions), where its values came from, what it spent.
function searchStats(run) {
  const meta = run.metadata || {};
  const stats = meta.stats;
  if (run.kind !== "search" || !stats || typeof stats !== "object") return [];
  const parts = [];
  if (typeof meta.nodes === "number") parts.push(`${meta.nodes} nodes`);
  if (typeof stats.merged_states === "number") parts.push(`${stats.merged_states} merged states (transpositions)`);
  if (typeof stats.reused_expansions === "number") parts.push(`${stats.reused_expansions} reused expansions`);
  if (typeof stats.value_source === "string" && stats.value_source) parts.push(`values: ${stats.value_source}`);
  const calls = meta.spent && meta.spent.policy_calls;
  if (typeof calls === "number") parts.push(`${calls} policy calls`);
  return parts.length ? field("search", el("span", { class: "search-stats" }, parts.join(" · "))) : [];
}

function messageView(msg) {
  const calls = (msg.tool_calls || []).map((tc) =>
    el("div", { class: "tool-call mono" }, `${tc.function.name}(${JSON.stringify(tc.function.arguments)})`));
  return el("div", { class: "msg role-" + msg.role },
    el("span", { class: "role" }, msg.role + (msg.name ? ` ${msg.name}` : "")),
    el("span", { class: "content" }, msg.content), calls);
}

function callView(call, runId) {
  const tokens = `in ${fmt(call.prompt_tokens)} / out ${fmt(call.completion_tokens)} tokens`;
  const messages = el("div", { class: "messages" }, el("p", { class: "muted" }, "loading the prompt…"));
  let loaded = false;
  const box = el("details", { class: "model-call", "data-call-seq": call.seq },
    el("summary", {}, `model call ${call.seq}: ${call.model || "model"} · ${tokens} · ${fmt(call.latency_ms)} ms`,
      call.error ? el("span", { class: "error" }, " " + call.error) : null),
    messages,
    call.response ? el("div", { class: "response" }, el("div", { class: "label" }, "response"), messageView(call.response)) : null);
  box.addEventListener("toggle", async () => {  // a long run's prompts are large: fetch one when it is opened
    if (!box.open || loaded) return;
    loaded = true;
    try {
      const data = await api(`/api/call?id=${encodeURIComponent(runId)}&seq=${call.seq}`);
      messages.replaceChildren(...data.messages.map(messageView));
      box.dataset.loaded = "1";
    } catch (err) {
      messages.replaceChildren(el("p", { class: "error" }, err.message));
    }
  });
  return box;
}

function stepView(step, runId) {
  // a long value comes cut (step.truncated); "load all" fetches the whole step and puts it in place
  const loadAll = step.truncated ? el("button", { type: "button", class: "load-all", onclick: async (ev) => {
    ev.target.disabled = true;
    try {
      const whole = await api(`/api/step?id=${encodeURIComponent(runId)}&seq=${step.seq}`);
      view.replaceWith(stepView(whole, runId));
    } catch (err) {
      banner(err.message);
      ev.target.disabled = false;
    }
  } }, "load all") : null;
  const view = el("div", { class: "step" + (step.decision ? " decision" : "") + (step.error ? " failed" : ""), "data-seq": step.seq },
    el("div", { class: "step-head" },
      el("span", { class: "seq" }, "#" + step.seq),
      el("span", { class: "node" }, step.node),
      step.decision ? el("span", { class: "badge" }, "decision") : null,
      el("span", { class: "muted" }, `${fmt(step.latency_ms)} ms`),
      step.reward !== null ? el("span", { class: "badge" }, "reward " + fmt(step.reward)) : null,
      step.error ? el("span", { class: "error" }, step.error) : null),
    step.text ? el("div", { class: "step-text" }, step.text) : null,
    step.model_calls.map((c) => callView(c, runId)),
    el("details", { class: "raw" }, el("summary", {}, "update"), el("pre", {}, JSON.stringify(step.update, null, 2))),
    loadAll);
  return view;
}

// -- search tree ------------------------------------------------------------------------

// The tree loads one level at a time (/api/tree): a search with 30k nodes sends only what is opened.
function treeView(runId, roots, total) {
  const EXPAND_ALL_CAP = 2000;
  const note = el("span", { class: "muted" });
  const children = async (n) => {
    if (n.kids) return n.kids;
    const data = await api(`/api/tree?id=${encodeURIComponent(runId)}&parent=${n.id}`);
    n.kids = data.nodes;
    if (data.total > data.nodes.length) note.textContent = `node #${n.id}: first ${data.nodes.length} of ${data.total} children`;
    return n.kids;
  };
  const build = (n) => {
    const classes = ["tree-node", n.chosen && "chosen", n.terminal && "terminal", n.invalid && "invalid"].filter(Boolean);
    const list = el("ul", { class: "children" });
    list.hidden = true;
    const toggle = el("button", {
      type: "button", class: "toggle", "aria-expanded": "false", disabled: n.n_children === 0,
      title: n.n_children ? `${n.n_children} child node(s)` : "leaf",
    }, n.n_children ? "▸" : "·");
    const li = el("li", { class: classes.join(" "), "data-node-id": n.id, "data-root": n.parent_id === null ? "1" : null });
    li.open = async (show) => {  // open (loading the level if needed) or close this node
      if (!n.n_children) return;
      if (show && !n.kids) list.replaceChildren(...(await children(n)).map(build));
      list.hidden = !show;
      toggle.setAttribute("aria-expanded", String(show));
      toggle.textContent = show ? "▾" : "▸";
    };
    const flip = () => li.open(list.hidden);
    toggle.addEventListener("click", (ev) => { ev.stopPropagation(); flip(); });
    const row = el("div", { class: "node-row", onclick: flip },
      toggle,
      el("span", { class: "node-id mono" }, "#" + n.id),
      el("span", { class: "action" }, n.action_text || (n.parent_id === null ? "(decision point)" : "(no action)")),
      el("span", { class: "badge" }, "score " + fmt(n.score)),
      el("span", { class: "badge" }, "value " + fmt(n.value)),
      el("span", { class: "badge" }, "visits " + n.visits),
      n.outcome !== null ? el("span", { class: "badge outcome" }, "outcome " + fmt(n.outcome)) : null,
      n.chosen ? el("span", { class: "badge chosen-badge" }, "chosen") : null,
      n.terminal ? el("span", { class: "badge" }, "terminal") : null,
      n.invalid ? el("span", { class: "badge error" }, "invalid") : null);
    li.append(...[row,  // append() would print a null as the text "null": absent parts are left out
      n.observation ? el("div", { class: "observation" }, n.observation) : null,
      n.reason ? el("div", { class: "reason" }, n.reason) : null,
      list].filter(Boolean));
    return li;
  };
  const items = () => [...document.querySelectorAll("#tree li.tree-node")];
  const expandAll = async () => {  // breadth first, level by level, up to a cap
    let opened = 0;
    for (let frontier = items(); frontier.length && opened < EXPAND_ALL_CAP; ) {
      const next = [];
      for (const li of frontier) {
        if (opened >= EXPAND_ALL_CAP) break;
        await li.open(true);
        next.push(...li.querySelectorAll(":scope > ul.children > li"));
        opened += 1;
      }
      frontier = next;
    }
    if (opened >= EXPAND_ALL_CAP) note.textContent = `opened the first ${EXPAND_ALL_CAP} nodes`;
  };
  const collapseAll = () => { for (const li of items()) li.open(false); };
  const chosenPath = async () => {
    collapseAll();
    let level = items().filter((li) => li.dataset.root === "1");
    while (level.length) {
      const next = [];
      for (const li of level) {
        await li.open(true);
        next.push(...li.querySelectorAll(":scope > ul.children > li.chosen"));
      }
      level = next;
    }
  };
  const tree = el("ul", { id: "tree", class: "tree" }, roots.map(build));
  const panel = el("section", { class: "panel" },
    el("h3", {}, `Search tree (${total} nodes)`),
    el("div", { class: "toolbar" },
      el("button", { type: "button", onclick: expandAll }, "Expand all"),
      el("button", { type: "button", onclick: collapseAll }, "Collapse all"),
      el("button", { type: "button", onclick: chosenPath }, "Chosen path"), note),
    tree);
  for (const li of tree.children) li.open(true);  // the roots start open; click any node to open or close it
  return panel;
}

function pairsView(pairs, count) {
  return el("section", { class: "panel" },
    el("h3", {}, "Preference pairs" + count),
    el("table", { class: "pairs" },
      el("thead", {}, el("tr", {}, ["source", "at node", "chosen", "score", "rejected", "score"].map((h) => el("th", {}, h)))),
      el("tbody", {}, pairs.map((p) => el("tr", {},
        el("td", {}, p.source), el("td", { class: "num" }, fmt(p.node_id)),
        el("td", { class: "good" }, p.chosen), el("td", { class: "num" }, fmt(p.chosen_score)),
        el("td", { class: "bad" }, p.rejected), el("td", { class: "num" }, fmt(p.rejected_score)))))));
}

function stepsPanel(data) {
  const runId = data.run.id;
  const list = el("div", { class: "step-list" }, data.steps.map((st) => stepView(st, runId)));
  const count = el("span", { class: "muted" });
  const more = el("button", { type: "button", id: "more-steps" }, "More steps");
  let shown = data.steps.length;
  const update = () => {
    count.textContent = shown < data.steps_total ? `showing ${shown} of ${data.steps_total}` : "";
    more.hidden = shown >= data.steps_total;
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const page = await api(`/api/steps?id=${encodeURIComponent(runId)}&offset=${shown}&limit=${data.page}`);
      list.append(...page.steps.map((st) => stepView(st, runId)));
      shown += page.steps.length;
    } catch (err) {
      banner(err.message);
    }
    more.disabled = false;
    update();
  });
  update();
  return el("section", { class: "panel", id: "steps" }, el("h3", {}, `Steps (${data.steps_total})`),
    data.steps_total ? list : el("p", { class: "muted" }, "No steps recorded."),
    el("div", { class: "toolbar" }, more, count),
    data.orphan_calls.map((c) => callView(c, runId)));
}

async function showRun(id) {
  const detail = $("#detail");
  let data;
  try {
    data = await api("/api/run?id=" + encodeURIComponent(id));
  } catch (err) {
    detail.replaceChildren(el("p", { class: "error" }, err.message));
    return;
  }
  for (const row of document.querySelectorAll("#runs tr.run-row")) row.classList.toggle("current", row.dataset.runId === data.run.id);
  const note = (shown, total) => (total > shown ? ` (first ${shown} of ${total})` : ` (${total})`);
  detail.replaceChildren(...[
    runHeader(data.run),
    el("section", { class: "panel" }, el("h3", {}, "Task"), el("div", { class: "task" }, data.task_text)),
    data.tree.length ? treeView(data.run.id, data.tree, data.run.n_nodes) : null,
    data.pairs.length ? pairsView(data.pairs, note(data.pairs.length, data.pairs_total)) : null,
    data.children.length ? el("section", { class: "panel" }, el("h3", {}, "Rollouts" + note(data.children.length, data.children_total)),
      el("table", { class: "children-runs" }, el("tbody", {}, data.children.map(runRow)))) : null,
    stepsPanel(data),
  ].filter(Boolean));  // replaceChildren would print a null as the text "null"
}

// -- comparison -------------------------------------------------------------------------

async function showCompare(a, b) {
  const detail = $("#detail");
  let left, right;
  try {
    [left, right] = await Promise.all([api("/api/turns?id=" + encodeURIComponent(a)), api("/api/turns?id=" + encodeURIComponent(b))]);
  } catch (err) {
    detail.replaceChildren(el("p", { class: "error" }, err.message));
    return;
  }
  const n = Math.max(left.turns.length, right.turns.length);
  const rows = [];
  for (let i = 0; i < n; i++) {
    const l = left.turns[i], r = right.turns[i];
    const same = l && r && l.action === r.action;
    const cell = (t) => el("td", {}, t ? [el("div", { class: "action" }, t.action), t.observation ? el("div", { class: "observation" }, t.observation) : null] : "–");
    rows.push(el("tr", { class: same ? "same" : "diff" }, el("td", { class: "num" }, i + 1), cell(l), cell(r)));
  }
  detail.replaceChildren(
    el("h2", {}, "Compare runs"),
    el("div", { class: "compare" }, runHeader(left.run), runHeader(right.run)),
    el("table", { id: "compare-turns", class: "compare-turns" },
      el("thead", {}, el("tr", {}, el("th", {}, "turn"), el("th", {}, shortId(left.run.id)), el("th", {}, shortId(right.run.id)))),
      el("tbody", {}, rows)));
}

// -- routing ----------------------------------------------------------------------------

function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("run")) return showRun(params.get("run"));
  if (params.get("compare")) {
    const [a, b] = params.get("compare").split(",");
    return showCompare(a, b);
  }
  $("#detail").replaceChildren(el("p", { class: "hint" }, "Pick a run on the left. Tick two runs to compare them side by side."));
}

document.addEventListener("DOMContentLoaded", () => {
  $("#filters").addEventListener("change", loadRuns);
  $("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadRuns(); });
  $("#refresh").addEventListener("click", () => { loadRuns(); route(); });
  $("#compare").addEventListener("click", () => {
    const [a, b] = [...state.selected];
    location.hash = "#compare=" + encodeURIComponent(a) + "," + encodeURIComponent(b);
  });
  window.addEventListener("hashchange", route);
  loadRuns().then(route);
});
