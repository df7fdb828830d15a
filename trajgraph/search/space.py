"""Decision points as LangGraph checkpoints: the one interface every optimizer uses.

The user's graph is compiled with a checkpointer and `interrupt_before=[decision_node]`;
every stop is a decision point. Branching is `update_state(point, action,
as_node=decision_node)` then running to the next stop, so the checkpoint lineage
is the search tree. The interface, kept small on purpose:

    root(input) -> Node                 run to the first decision point
    propose(node, k) -> [Candidate]     k candidate actions (the agent's own node by default)
    expand(node, candidate) -> Node     branch: apply the action, run to the next decision point
    node.terminal, node.outcome         finished? final reward if known
    score(nodes) -> [float]             reward model / judge / rollouts, batched

Transpositions: every node gets a state key (`state_key=`, default: learned from the
tree, `_situation.py`: the decision state without its path, running score, step
counters or an in-graph environment's message). A node whose state
was reached before, at the same depth or sooner, points at the first node that did
(`node.twin`) and is expanded there (`expand` grows a state in one place: a state
reached again is a detour cut out, and one reached sooner becomes the state's node,
so a graph that counts turns only in its history loses no turns to a merge); the
same action at the same node is never expanded twice (`expand` returns the child it
has), and a state already scored is not scored again (`score` remembers values by
key). `space.merged` counts the transpositions. Policies may give priors
(`propose_with_priors`, `scores`) and environments admissible actions
(`admissible`); see docs/search.md.

Environments whose state lives outside the graph fork through `snapshot()/restore()`
(see `Environment`); expansions are then serialised on that environment. How a
raw policy sample becomes a valid or invalid `Candidate` is `_candidates.py`; the
tree's types (`Node`, `Candidate`, `Environment`, `TreeLog`) are `tree.py`; how any
reward becomes the one scorer `score` calls is `scoring.py`.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel

from trajgraph._internal.langgraph import ainvoke_node, compiled_graph, invoke_node, require_nodes, sync_nodes
from trajgraph.errors import ForkError
from trajgraph.recording.record import is_recorded, unwrap
from trajgraph.render import render_action, render_observation, render_task
from trajgraph.search._candidates import Failed, as_update, count_tokens, not_an_update, tool_names, validate
from trajgraph.search._situation import RUNNING, Situations, dominates
from trajgraph.search.budget import BudgetExhausted, BudgetMeter, finishing
from trajgraph.search.scoring import Scorer, StateScorer, as_reward
from trajgraph.search.tree import Candidate, Environment, Node, Outcome, default_outcome, insert_by_id
from trajgraph.store.json import canonical_key


class Space:
    """The decision-point interface over one compiled graph and one task."""

    def __init__(
        self,
        graph: Any,
        decision_node: str,
        *,
        outcome: Outcome | None = None,
        reward: Any = None,
        policy: Any = None,
        environment: Environment | None = None,
        meter: BudgetMeter | None = None,
        checkpointer: Any = None,
        context: Any = None,
        max_depth: int = 100,
        concurrency: int = 8,
        repeatable: bool = False,
        actions_key: str | None = "actions",
        inline: bool | None = None,
        state_key: Callable[[dict[str, Any]], Any] | None = None,
        transpositions: bool = True,
        partial: Outcome | None = None,
    ) -> None:
        from trajgraph.search.budget import Budget

        self.decision_node = decision_node
        self.graph = _searchable(graph, decision_node, checkpointer)
        self.outcome_fn = outcome or default_outcome
        self.reward: Scorer | None = as_reward(reward)  # None: outcomes at terminals only
        self.actions_key = actions_key  # the state key listing admissible actions (None: unchecked)
        self.policy = policy
        self.environment = environment
        if environment is not None and not isinstance(environment, Environment):
            raise ForkError(
                f"{type(environment).__name__} cannot be branched: give it snapshot()/restore(), or keep its state in the graph"
            )
        self.meter = meter or BudgetMeter(Budget())
        self.context = context
        self.max_depth = max_depth
        self.thread_id = f"tg-search-{uuid.uuid4().hex[:12]}"
        self.repeatable = repeatable
        # inline: step the graph (and an in-process policy's `propose_inline`) in this thread.
        # Only for repeatable searches (they run one branch at a time anyway), sync graphs and
        # trajgraph's own in-memory checkpointer; None picks it where all three hold.
        if inline is None:
            inline = repeatable and checkpointer is None and environment is None and sync_nodes(self.graph)
        self.inline = inline
        self._ids = itertools.count()
        self._env_lock = asyncio.Lock()
        self._finish_lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(concurrency)
        self.nodes: list[Node] = []
        self.reflections: list[str] = []  # lessons from failed trajectories, shown to policies
        self.on_node: Callable[[Node], None] | None = None  # called once per node, when it is complete
        self.task_text = ""
        self.tools = tool_names(self.graph)
        self.key_fn = state_key
        self.transpositions = transpositions  # False: a stochastic environment (the same action may lead elsewhere)
        self.partial = partial  # partial outcome of an unfinished state, when the environment gives one
        self._partial = None if partial is None else StateScorer(lambda state: partial(state) or 0.0)
        self.situations = Situations(messages=environment is None)  # the default key, learned as the tree grows
        self.table: dict[str, Node] = {}  # state key -> the first node that reached it
        self.merged = 0  # nodes that reached a state already in the table
        self.reused = 0  # expansions answered from the tree (the same action at the same node)
        self.closed: set[int] = set()  # nodes whose every continuation has finished (nothing left to learn)
        self._twins: dict[int, list[Node]] = {}  # first node id -> the transpositions that point at it
        self.diverted = 0  # rollout steps turned away from a finished subtree (see `rollout`)
        self._values: dict[tuple[int, str], float] = {}  # (scorer, state key) -> score
        self.cached_scores = 0
        self._priors: dict[int, dict[str, float] | None] = {}

    # -- the interface -------------------------------------------------------------

    async def root(self, input: Any) -> Node:
        """Run the task to its first decision point (or to the end)."""
        self.task_text = render_task(input)
        config: RunnableConfig = {"configurable": {"thread_id": self.thread_id}, "recursion_limit": 10_000}
        async with self._env_lock:
            steps, checkpoint = await self._run(input, config)
            snap = self.environment.snapshot() if self.environment is not None else None
        root = self._node(checkpoint, node_id=next(self._ids), parent=None, action=None, steps=steps, snapshot=snap)
        if root.terminal:
            self.meter.answered = True
        self._done(root)
        return root

    async def propose(self, node: Node, k: int) -> list[Candidate]:
        """k candidate actions at a decision point, sampled concurrently, duplicates merged."""
        if node.terminal:
            raise ValueError(f"cannot propose actions at a finished state ({node!r})")
        await self._gate()
        n = self.meter.reserve_calls(k)
        state = dict(node.state)
        if self.reflections:
            state["reflections"] = list(self.reflections)
        priors: list[float | None] = []
        if self.policy is not None:
            try:
                if callable(getattr(self.policy, "propose_with_priors", None)):
                    pairs = list(await self.policy.propose_with_priors(state, n))
                    actions, priors = [a for a, _ in pairs], [float(p) for _, p in pairs]
                else:
                    actions = await self._propose(state, n)
            except Exception as exc:  # a failing policy is an invalid candidate, not a crash
                actions = [Failed(exc)]
        else:
            actions = await self.gather(*(self._sample_node(node) for _ in range(n)), errors_as_results=True)
        if not actions:  # e.g. a provider that answered with no choices: an invalid candidate, not an IndexError
            actions = [Failed(ValueError(f"the policy proposed no action (asked for {n})"))]
        merged: dict[str, Candidate] = {}
        table = await self.priors(node)
        for i, action in enumerate(actions):
            cand = self.candidate(action, state)
            self.meter.add_tokens(cand.tokens)
            if cand.key in merged:
                merged[cand.key].count += 1
            else:
                merged[cand.key] = cand
                given = priors[i] if i < len(priors) else None
                cand.prior = given if given is not None else (table or {}).get(cand.text.strip())
        return list(merged.values())

    async def priors(self, node: Node) -> dict[str, float] | None:
        """The policy's probability of each admissible action at `node` (by action text),
        from its `scores(state, actions)` (log-probabilities or logits, softmaxed here);
        None when the policy gives none or the state lists no actions. Costs no policy call."""
        if node.id in self._priors:
            return self._priors[node.id]
        actions = self.actions_at(node)
        scorer = getattr(self.policy, "scores", None)
        table: dict[str, float] | None = None
        if actions and callable(scorer):
            try:
                raw = scorer(dict(node.state), actions)
                raw = await raw if inspect.isawaitable(raw) else raw
                logits = [float(x) for x in raw]
                top = max(logits)
                weights = [math.exp(x - top) for x in logits]
                table = {a: w / sum(weights) for a, w in zip(actions, weights)}
            except Exception:  # priors are advice: a failing scorer leaves the search as it was
                table = None
        self._priors[node.id] = table
        return table

    def actions_at(self, node: Node) -> list[str]:
        """The admissible actions the state lists (under `actions_key`), or []."""
        listed = node.state.get(self.actions_key) if self.actions_key is not None else None
        return [a for a in listed if isinstance(a, str)] if isinstance(listed, list) else []

    async def admissible(self, node: Node, exclude: set[str] = frozenset()) -> list[Candidate]:  # type: ignore[assignment]
        """Candidates for the admissible actions the state lists, not in `exclude` (candidate
        keys), most probable first when the policy gives priors. No policy call: this is
        how a search reaches actions the policy keeps not proposing."""
        table = await self.priors(node) or {}
        out = [c for c in (self.candidate({"action": a}, node.state) for a in self.actions_at(node)) if c.key not in exclude]
        for c in out:
            c.prior = table.get(c.text.strip())
        return sorted(out, key=lambda c: -(c.prior or 0.0))

    def state_key(self, state: dict[str, Any], depth: int | None = None) -> str:
        """Which situation a state is: `state_key=` when given, else the default learned
        from the tree (`_situation.py`: no path, running score, step counters, or the
        environment's message). `depth`: where the state was reached (step counters are
        judged against it; without it they are kept)."""
        if self.key_fn is not None:
            return canonical_key(self.key_fn(state))
        return self.situations.key(state, depth)

    def resolve(self, node: Node) -> Node:
        """The node that holds what is known about `node`'s state (itself unless a transposition)."""
        return node.twin if node.twin is not None else node

    def partial_scorer(self) -> Scorer | None:
        """The environment's partial outcome as a scorer (None when it gives none)."""
        return self._partial

    async def expand(self, node: Node, candidate: Candidate | Any, *, merge: bool = True) -> Node:
        """Apply an action at a decision point and run to the next one. A transposition is
        expanded at the first node of its state (`merge=False`: at `node` itself, as the
        agent alone would go on, e.g. `Greedy`)."""
        if not isinstance(candidate, Candidate):
            candidate = self.candidate(candidate, node.state)
        if node.terminal:
            raise ValueError(f"cannot expand a finished state ({node!r})")
        await self._gate()
        self.meter.check()
        if self.transpositions and merge and node.twin is not None:  # a state reached before grows in one place
            node = node.twin
        if self.transpositions and not candidate.invalid:
            done = next((ch for ch in node.children if not ch.invalid and canonical_key(ch.action) == candidate.key), None)
            if done is not None:  # this action was applied here before: a deterministic step gives the same child
                self.reused += 1
                return done
        # the id (and so the child's place among its siblings) is taken before any await:
        # concurrent expansions finish in any order, but UCT ties and best-terminal ties
        # are broken by this order, so it must be the order the expansions were asked for
        node_id = next(self._ids)
        if candidate.invalid and isinstance(candidate.action, Failed):
            return self.expand_failed(node, node_id, candidate.action, candidate.text)
        try:
            async with self._sem:
                if self.environment is not None:
                    async with self._env_lock:
                        self.environment.restore(node.snapshot)
                        steps, checkpoint = await self._branch(node, candidate)
                        snap = self.environment.snapshot()
                else:
                    steps, checkpoint = await self._branch(node, candidate)
                    snap = None
        except _Rejected as exc:  # the graph refused the update: an invalid candidate, not a crash
            return self.expand_failed(node, node_id, Failed(exc.cause), candidate.text)
        self.meter.add_env_steps(1)
        child = self._node(checkpoint, parent=node, action=candidate.action, steps=steps, snapshot=snap, node_id=node_id)
        child.invalid = candidate.invalid
        child.action_text = candidate.text
        child.prior = candidate.prior
        if candidate.invalid and candidate.error:
            child.reason = candidate.error  # why it is invalid, for the tree view and the store
        if child.terminal and not child.invalid:
            self.meter.answered = True  # a real answer exists: the finish reserve is released
        insert_by_id(node.children, child)
        if self.transpositions and (child.terminal or child.twin is not None):  # a loop or a closed state may close `node`
            self._close(child if child.terminal else node)
        self._done(child)
        return child

    def expand_failed(self, node: Node, node_id: int, failed: Failed, text: str) -> Node:
        """An action that could not be applied: a recorded dead end (invalid, terminal) with the reason."""
        child = Node(node_id, node.config, node.state, parent=node, action=None, action_text=text,
                     observation=failed.error, depth=node.depth + 1, terminal=True, outcome=None, invalid=True,
                     reason=failed.error)
        insert_by_id(node.children, child)
        insert_by_id(self.nodes, child)
        self._done(child)
        return child

    def _done(self, node: Node) -> None:
        if self.on_node is not None:  # e.g. streamed to the store as the search goes
            self.on_node(node)

    async def score(self, nodes: Sequence[Node], reward: Scorer | None = None) -> list[float]:
        """Known outcomes for finished nodes; the reward for the rest (batched).
        `reward`: a scorer of the optimizer's own (RRO's Monte Carlo rollouts) instead
        of the space's; 0.0 where there is neither."""
        known = [n.outcome if n.terminal else None for n in nodes]
        todo = [i for i, v in enumerate(known) if v is None]
        scorer = reward or self.reward
        rewards: dict[int, float] = {}
        if todo and scorer is not None and self.transpositions:  # a state scored before keeps its score
            for i in list(todo):
                cached = self._values.get((id(scorer), nodes[i].key))
                if cached is not None:
                    rewards[i] = cached
                    todo.remove(i)
                    self.cached_scores += 1
        if todo and scorer is not None:
            fresh = dict(zip(todo, await scorer.score_nodes(self, [nodes[i] for i in todo])))
            rewards.update(fresh)
            if self.transpositions:
                self._values.update({(id(scorer), nodes[i].key): v for i, v in fresh.items()})
        elif todo:
            rewards = {i: 0.0 for i in todo}
        out = [float(rewards[i] if v is None else v) for i, v in enumerate(known)]
        for n, v in zip(nodes, out):
            n.score = v
        return out

    # -- helpers optimizers share ------------------------------------------------------

    async def gather(self, *aws: Awaitable[Any], errors_as_results: bool = False) -> list[Any]:
        """Run branches (or samples) concurrently (k of them cost about one model
        latency), or, when the space is `repeatable`, one after another in order.
        Concurrent branches share one budget, and which of them spends its last calls
        depends on thread timing; in order, a fixed seed with a deterministic policy
        and environment gives the same search every time. `errors_as_results`: an
        exception is returned in its place, like asyncio.gather(return_exceptions=True).
        Otherwise the first exception is raised only once every branch has stopped: a
        branch left running after a budget stop would go on spending, unlimited, while
        the search finishes its chosen trajectory, and add nodes to a tree already
        returned (a budget of 15 calls overran by 139 before)."""
        if not self.repeatable:
            results = list(await asyncio.gather(*aws, return_exceptions=True))
            failed = None if errors_as_results else next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed
            return results
        out: list[Any] = []
        for i, aw in enumerate(aws):
            try:
                out.append(await aw)
            except BaseException as exc:
                if errors_as_results and isinstance(exc, Exception):
                    out.append(exc)
                    continue
                for rest in aws[i + 1 :]:  # a budget stop ends the branches that never started
                    if inspect.iscoroutine(rest):
                        rest.close()
                raise
        return out

    async def rollout(self, node: Node, *, temperature_k: int = 1, fresh: bool = True, escape: bool = False) -> Node:
        """Finish a trajectory from `node` with the policy's first sample at each step.

        With transpositions (a deterministic space), a sample that leads into a finished
        subtree (`is_closed`: every continuation there already ended), or back to a state
        this rollout has been at (on its tree path, or walked before a transposition took
        it into another lineage), is diverted to an open child, else to an admissible
        action not tried yet: re-walking a finished trajectory or a loop would spend calls
        to learn nothing. So every rollout ends at a trajectory not seen before while one
        is left (`diverted` counts the turns).
        `fresh=False`: the policy's samples only, where they lead (an unbiased Monte Carlo
        estimate; no loop is cut, so an episode that ends at a step limit kept in its
        history does end).
        `escape=True`: a fresh rollout cornered (the sample is spent, and so is every
        other continuation of the state: each child finished or a loop back to its walk,
        each listed action tried) goes on from there as the agent alone would (no loop
        cut, so its turns run and it ends). Without it a cornered rollout takes the loop,
        and where the way back out is a loop too it circles until the budget ends (on the
        known-optimum maze, one SE-Agent rollout spent the last 110 of 120 calls between
        two cells)."""
        walk: set[int] = set()  # the states this rollout has been at (a transposition may jump lineages)
        while not node.terminal:
            walk.add(self.resolve(node).id)
            cands = await self.propose(node, temperature_k)
            cand = cands[0]
            if fresh:
                cand, cornered = await self._fresh(node, cand, walk)
                fresh = not (escape and cornered)  # cornered: on as the agent alone would, so it ends
            node = await self.expand(node, cand, merge=fresh)
        return node

    def is_closed(self, node: Node) -> bool:
        """Whether every continuation from `node` has finished: it is terminal, or it lists
        its actions and each has been tried and is closed (a transposition: its first node)."""
        return node.id in self.closed or (node.twin is not None and not node.children and node.twin.id in self.closed)

    def _spent(self, node: Node, child: Node, ancestors: set[int]) -> bool:
        """Whether `child` of `node` has nothing new below it: closed, or a loop back to a
        state on the way here (a transposition of `node` or of one of its ancestors)."""
        return self.is_closed(child) or (child.twin is not None and child.twin.id in ancestors)

    async def _fresh(self, node: Node, cand: Candidate, walk: set[int] = frozenset()) -> tuple[Candidate, bool]:  # type: ignore[assignment]
        if not self.transpositions or cand.invalid:
            return cand, False
        node = self.resolve(node)
        child = next((ch for ch in node.children if not ch.invalid and canonical_key(ch.action) == cand.key), None)
        ancestors = {n.id for n in node.path()} | walk
        if child is None or not self._spent(node, child, ancestors):
            return cand, False
        open_children = [ch for ch in node.children if not ch.invalid and not self._spent(node, ch, ancestors)]
        tried = {canonical_key(ch.action) for ch in node.children}
        alternatives = [self.candidate(ch.action, node.state) for ch in open_children] or await self.admissible(node, tried)
        if not alternatives:
            return cand, True
        self.diverted += 1
        return alternatives[0], False

    def _close(self, node: Node | None) -> None:
        """Mark finished subtrees closed, from a new terminal node upward."""
        while node is not None and node.id not in self.closed:
            if not node.terminal:
                listed = {self.candidate({"action": a}, node.state).key for a in self.actions_at(node)}
                tried = {canonical_key(ch.action): ch for ch in node.children if not ch.invalid}
                ancestors = {n.id for n in node.path()}
                if not listed or not listed <= tried.keys() or not all(self._spent(node, ch, ancestors) for ch in tried.values()):
                    return
            self.closed.add(node.id)
            for twin in self._twins.get(node.id, []):  # a transposition of a finished state is finished
                if not twin.children:
                    self._close(twin.parent)
            node = node.parent

    def candidate(self, action: Any, state: dict[str, Any] | None = None) -> Candidate:
        if isinstance(action, Candidate):
            return action
        if isinstance(action, BaseException):
            action = Failed(action)
        if isinstance(action, Failed):
            text = f"<invalid: {action.error}>"
            return Candidate(action=action, text=text, key=text, invalid=True, error=action.error)
        action = as_update(action)
        refused = not_an_update(action)
        if refused:  # e.g. a policy returning "forward" instead of {"action": "forward"}
            return self.candidate(Failed(TypeError(refused)), state)
        text = render_action(action)
        invalid, error = validate(action, state or {}, self.tools, self.actions_key)
        return Candidate(action=action, text=text, key=canonical_key(action), tokens=count_tokens(action), invalid=invalid, error=error)

    def best_open(self) -> Node | None:
        """The most promising unfinished valid node: by value (else score), then depth."""
        open_nodes = [n for n in self.nodes if not n.terminal and not n.invalid]
        if not open_nodes:
            return None
        return max(open_nodes, key=lambda n: (n.value if n.value is not None else (n.score or 0.0), n.depth, -n.id))

    async def finish(self, node: Node, *, retries: int = 3) -> tuple[Node, str]:
        """Finish `node`'s trajectory greedily with what the budget allows (the reserve
        included); a failed or invalid sample is retried from the same point, at most
        `retries` times in a row. Returns the node reached and how it went."""
        start_depth, calls0 = node.depth, self.meter.spent.policy_calls
        failures = 0
        with finishing():
            try:
                while not node.terminal and failures < retries:
                    candidate = (await self.propose(node, 1))[0]
                    child = await self.expand(node, candidate, merge=False)  # the agent's own way to the end: no loop cut
                    if child.invalid:
                        failures += 1
                        continue
                    failures = 0
                    child.reason = child.reason or "greedy finish"
                    node = child
            except BudgetExhausted:
                pass
        calls = self.meter.spent.policy_calls - calls0
        if node.terminal and not node.invalid:
            return node, f"finished greedily from depth {start_depth} in {calls} policy calls, within the budget"
        if failures >= retries:
            return node, f"unfinished: {retries} invalid samples in a row at depth {node.depth} after {calls} finishing calls"
        stop = self.meter.exhausted() or self.meter.spent.stopped_by
        hint = "; hold more calls back for it with Budget(finish_reserve=N)" if stop == "policy_calls" else ""
        return node, f"unfinished: the budget ({stop}) ran out at depth {node.depth} after {calls} finishing calls{hint}"

    async def _gate(self) -> None:
        """At the reserve line with nothing finished: finish the most promising open
        trajectory now, from the reserve, then let the search go on with what is left
        (a search stopped there would leave the rest of the budget unspent)."""
        if not self.meter.at_reserve():
            return
        async with self._finish_lock:
            if not self.meter.at_reserve():  # a concurrent branch finished one meanwhile
                return
            start = self.best_open()
            if start is not None:
                end, how = await self.finish(start)
                end.reason = f"{end.reason}; {how}" if end.reason else how
            self.meter.reserve_used = True

    def best_terminal(self) -> Node | None:
        done = [n for n in self.nodes if n.terminal and not n.invalid]
        if not done:
            return None
        return max(done, key=lambda n: (n.outcome if n.outcome is not None else float("-inf"), n.score or 0.0, -n.id))

    # -- internals ----------------------------------------------------------------------

    async def _sample_node(self, node: Node) -> Any:
        """Run the agent's own decision node once on the state at `node`."""
        config = cast(RunnableConfig, {**node.config, "metadata": {"langgraph_node": self.decision_node, "trajgraph_sample": True}})
        if self.inline:
            return invoke_node(self.graph, self.decision_node, node.state, config, self.context)
        return await ainvoke_node(self.graph, self.decision_node, node.state, config, self.context)

    async def _propose(self, state: dict[str, Any], n: int) -> list[Any]:
        """The policy's samples; inline, a policy's `propose_inline` runs in this thread."""
        assert self.policy is not None
        if self.inline and callable(getattr(self.policy, "propose_inline", None)):
            return list(self.policy.propose_inline(state, n))
        return list(await self.policy.propose(state, n))

    async def _branch(self, node: Node, candidate: Candidate) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
        from langgraph.errors import InvalidUpdateError

        try:
            if self.inline:
                config = self.graph.update_state(node.config, candidate.action, as_node=self.decision_node)
            else:
                config = await self.graph.aupdate_state(node.config, candidate.action, as_node=self.decision_node)
        except (InvalidUpdateError, TypeError, ValueError) as exc:
            raise _Rejected(exc) from exc
        steps, checkpoint = await self._run(None, config)
        return [(self.decision_node, candidate.action), *steps], checkpoint

    async def _run(self, input: Any, config: RunnableConfig) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
        steps: list[tuple[str, Any]] = []
        checkpoint: dict[str, Any] | None = None
        run_config = cast(RunnableConfig, {**config, "recursion_limit": 10_000})
        if self.inline:
            return self._run_inline(input, run_config)
        if self.context is not None:
            stream = self.graph.astream(input, run_config, stream_mode=["updates", "checkpoints"], context=self.context)
        else:
            stream = self.graph.astream(input, run_config, stream_mode=["updates", "checkpoints"])
        async for mode, chunk in stream:
            if mode == "checkpoints":
                checkpoint = cast("dict[str, Any]", chunk)
            elif isinstance(chunk, dict):
                for name, update in chunk.items():
                    if not name.startswith("__"):
                        steps.append((name, update))
        if checkpoint is None:  # nothing ran: the input checkpoint is the answer
            snap = await self.graph.aget_state(config)
            checkpoint = {"config": snap.config, "values": snap.values, "next": list(snap.next)}
        return steps, checkpoint

    def _run_inline(self, input: Any, config: RunnableConfig) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
        """`_run` through LangGraph's sync path in this thread: no event-loop or thread-pool
        hop per node (they were 12-16% of a repeatable search's CPU, issue 12.4)."""
        steps: list[tuple[str, Any]] = []
        checkpoint: dict[str, Any] | None = None
        kwargs: dict[str, Any] = {"context": self.context} if self.context is not None else {}
        for mode, chunk in self.graph.stream(input, config, stream_mode=["updates", "checkpoints"], **kwargs):
            if mode == "checkpoints":
                checkpoint = cast("dict[str, Any]", chunk)
            elif isinstance(chunk, dict):
                steps.extend((name, update) for name, update in chunk.items() if not name.startswith("__"))
        if checkpoint is None:
            snap = self.graph.get_state(config)
            checkpoint = {"config": snap.config, "values": snap.values, "next": list(snap.next)}
        return steps, checkpoint

    def _node(self, checkpoint: dict[str, Any], *, node_id: int, parent: Node | None, action: Any, steps: list[tuple[str, Any]],
              snapshot: Any) -> Node:
        values = checkpoint.get("values") or {}
        nxt = list(checkpoint.get("next") or [])
        depth = 0 if parent is None else parent.depth + 1
        terminal = self.decision_node not in nxt or depth >= self.max_depth
        observation = " ".join(render_observation(u) for name, u in steps if name != self.decision_node and u is not None)
        node = Node(
            id=node_id,
            config=checkpoint["config"],
            state=dict(values) if isinstance(values, dict) else {"value": values},
            parent=parent,
            action=action,
            action_text=render_action(action) if action is not None else "",
            observation=observation.strip(),
            depth=depth,
            terminal=terminal,
            snapshot=snapshot,
            steps=steps,
        )
        if terminal:
            node.outcome = self.outcome_fn(node.state)
        came_from = parent.key if parent is not None else ""
        rekey = self.key_fn is None and self.situations.observe(node.state, depth, action, terminal, came_from)
        insert_by_id(self.nodes, node)
        if rekey:  # the default key learned something that changes the keys given: rebuild the table
            self.table.clear()
            self._twins.clear()
            self.merged = 0
            for n in self.nodes:
                if n.twin is not None:
                    n.twin = None
                    n.reason = "" if n.reason.startswith("transposition of") else n.reason
                self._place(n)
        else:
            self._place(node)
        return node

    def _place(self, node: Node) -> None:
        """Key `node` and, unfinished, find the node that stands for its state: the first
        to reach it, or this one if reached sooner. With the default key the stand-in must
        dominate (`dominates`: no later, no less running score); where neither dominates,
        the running score joins the key and each keeps its own."""
        node.key = self.state_key(node.state, node.depth)
        if node.terminal or not self.transpositions:
            return
        first = self.table.setdefault(node.key, node)
        if first is not node and self.key_fn is None and not dominates(first.depth, first.state, node.depth, node.state):
            if dominates(node.depth, node.state, first.depth, first.state):
                self.table[node.key] = first = node
            else:
                node.key = canonical_key([node.key, node.state.get(RUNNING)])
                first = self.table.setdefault(node.key, node)
        if first.depth > node.depth:  # reached sooner now (more turns left): this one stands for the state
            self.table[node.key] = first = node
        if first is not node:
            node.twin = first
            self._twins.setdefault(first.id, []).append(node)
            self.merged += 1
            node.reason = f"transposition of #{first.id}"


class _Rejected(Exception):
    """The graph refused a candidate's update (wrong keys or type): an invalid candidate."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _searchable(graph: Any, decision_node: str, checkpointer: Any) -> Pregel:
    """Compile (or copy) the graph with a checkpointer and a stop before the decision node."""
    from trajgraph._internal.hermetic import memory_checkpointer

    compiled: Pregel = compiled_graph(graph, "optimize()")
    if is_recorded(compiled):  # search the plain graph; the optimizer records its own tree
        compiled = unwrap(cast(Pregel, compiled))
    graph = compiled
    require_nodes(graph, decision_node)
    return graph.copy({"checkpointer": checkpointer or memory_checkpointer(graph), "interrupt_before_nodes": [decision_node]})


__all__ = ["Space", "Node", "Candidate", "Environment", "default_outcome"]
