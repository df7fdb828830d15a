"""No process-wide side effects on import, and checkpoint deserialization that stays strict
whatever the import order (issue 11, item 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_OURS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "LANGGRAPH_STRICT_MSGPACK", "LITELLM_LOCAL_MODEL_COST_MAP", "OMP_WAIT_POLICY")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _OURS}


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_clean_env())


def test_importing_trajgraph_leaves_the_environment_unchanged() -> None:
    proc = _python(
        "import os\n"
        "before = dict(os.environ)\n"
        "import trajgraph as tg\n"
        "import trajgraph.store, trajgraph.replay, trajgraph.recording, trajgraph.search, trajgraph.export\n"
        "tg.Store, tg.record, tg.replay, tg.sft_dataset, tg.export_spans\n"
        "changed = {k: os.environ.get(k) for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k)}\n"
        "assert not changed, changed\n"
        "print('unchanged')\n"
    )
    assert proc.returncode == 0 and "unchanged" in proc.stdout, proc.stderr[-2000:]


def test_the_cli_and_the_test_kit_keep_their_offline_defaults() -> None:
    proc = _python("import os, trajgraph.cli\nprint(os.environ.get('HF_HUB_OFFLINE'), os.environ.get('LITELLM_LOCAL_MODEL_COST_MAP'))")
    assert proc.returncode == 0 and proc.stdout.split() == ["1", "True"], proc.stderr[-2000:]


_CRAFTED = """
import sys
import langgraph.checkpoint.serde.jsonplus as jp  # LangGraph first: LANGGRAPH_STRICT_MSGPACK was read already (unset)
import ormsgpack
import trajgraph
from trajgraph._internal.hermetic import memory_checkpointer, strict_serde
from trajgraph.testing import deceptive_chain_graph

marker = sys.argv[1]
inner = ormsgpack.packb(("os", "system", ["touch " + marker]))
payload = ("msgpack", ormsgpack.packb(ormsgpack.Ext(jp.EXT_CONSTRUCTOR_POS_ARGS, inner)))
for serde in (strict_serde(), strict_serde(deceptive_chain_graph()), memory_checkpointer().serde):
    value = serde.loads_typed(payload)
    assert value == ["touch " + marker], value  # handed back as plain data
import os
assert not os.path.exists(marker), "the crafted checkpoint ran"
if sys.argv[2] == "control":
    jp.JsonPlusSerializer().loads_typed(payload)  # LangGraph's default: the payload is live
print("ok")
"""


def test_a_crafted_checkpoint_runs_nothing_even_when_langgraph_was_imported_first(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    proc = subprocess.run([sys.executable, "-c", _CRAFTED, str(marker), "strict"], capture_output=True, text=True,
                          timeout=120, env=_clean_env())
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    assert not marker.exists()
    control = subprocess.run([sys.executable, "-c", _CRAFTED, str(marker), "control"], capture_output=True, text=True,
                             timeout=120, env=_clean_env())
    assert control.returncode == 0, control.stderr[-2000:]
    assert marker.exists()  # the same bytes through a default serializer did run: the test has teeth


def test_every_checkpointer_trajgraph_creates_is_strict() -> None:
    """Checkpointers and serializers are made in one place (trajgraph/_internal/hermetic.py), strict."""
    import re

    root = Path(__file__).resolve().parent.parent / "trajgraph"
    makers = re.compile(r"\b(InMemorySaver|MemorySaver|SqliteSaver|AsyncSqliteSaver|PostgresSaver|JsonPlusSerializer)\(")
    offenders = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if p.relative_to(root).as_posix() != "_internal/hermetic.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if makers.search(line)]
    assert not offenders, f"create checkpointers with trajgraph._internal.hermetic.memory_checkpointer/strict_serde: {offenders}"


def test_building_a_litellm_policy_sets_only_litellms_price_list_switch() -> None:
    proc = _python(
        "import os\n"
        "before = dict(os.environ)\n"
        "import trajgraph as tg\n"
        "tg.LiteLLMPolicy('openai/some-model')\n"
        "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
        "print(changed)\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['LITELLM_LOCAL_MODEL_COST_MAP']"
