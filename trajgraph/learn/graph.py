"""Put a trained policy back into the user's graph.

`with_policy(graph, policy, decision_node=...)` returns a copy of the compiled
graph whose decision node asks `policy` for its update; every other node, edge,
routing function, retry and cache policy stays as the user built it (the node's
runnable is swapped, as `record` does). The result is an ordinary compiled graph:
`tg.record` records it, `tg.optimize` / `tg.search` search it (their candidates
then come from the trained policy, because a search samples the agent's own
decision node unless `policy=` says otherwise), and it can be a node of a
larger graph. `policy` is a trained folder (`load_policy`) or any object with
`async propose(state, k)` (trajgraph.search.policy.Policy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trajgraph._internal.aio import run_sync
from trajgraph._internal.langgraph import compiled_graph, require_nodes, with_node_runnables
from trajgraph.errors import ConfigError
from trajgraph.policies import head as trainable
from trajgraph.policies import lm


def load_policy(path: str | Path, **options: Any) -> Any:
    """A trained folder as a policy: a MiniLM head (policy.json) or a causal LM (config.json + safetensors).

    options go to the loader (temperature, seed; for an LM also mode="rank"|"generate")."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"model folder {path} does not exist; give the folder `trajgraph train policy --out` wrote")
    if trainable.is_policy_folder(path):
        return trainable.load_trainable_policy(path, **options)
    if lm.is_lm_folder(path):
        return lm.load_lm_policy(path, **options)
    raise ConfigError(f"{path}: not a trained policy folder (no policy.json + head.safetensors, no config.json + *.safetensors)")


def policy_version(policy: Any) -> dict[str, Any]:
    """{"name", "hash", "round"} of a trained policy; a plain policy gives its name and no hash."""
    version = getattr(policy, "version", None)
    if isinstance(version, dict):
        return dict(version)
    return {"name": str(getattr(policy, "name", type(policy).__name__)), "hash": None, "round": None}


def as_node_policy(policy: Any) -> Any:
    """A folder path -> the loaded policy; an object with `propose` as it is."""
    if isinstance(policy, (str, Path)):
        return load_policy(policy)
    if not hasattr(policy, "propose"):
        raise ConfigError(f"policy must be a trained model folder or have `async propose(state, k)`; got {type(policy).__name__}")
    return policy


def with_policy(graph: Any, policy: Any, *, decision_node: str = "policy") -> Any:
    """The compiled `graph` with `decision_node` served by `policy` (a folder path or a policy object)."""
    from langchain_core.runnables import RunnableLambda

    compiled = compiled_graph(graph, "with_policy()")
    require_nodes(compiled, decision_node)
    chosen = as_node_policy(policy)

    async def decide(state: dict[str, Any]) -> Any:
        updates = await chosen.propose(dict(state), 1)
        if not updates:
            raise ConfigError(f"policy {getattr(chosen, 'name', chosen)!r} proposed no action")
        if isinstance(updates[0], BaseException):
            raise updates[0]
        return updates[0]

    def decide_sync(state: dict[str, Any]) -> Any:
        return run_sync(decide(state))

    node = RunnableLambda(decide_sync, afunc=decide, name=decision_node)
    return with_node_runnables(compiled, {decision_node: (node, [])})


__all__ = ["with_policy", "load_policy", "policy_version", "as_node_policy"]
