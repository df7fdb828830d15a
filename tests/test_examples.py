"""Every example runs, offline, and says what it claims (examples rot first otherwise).

`offline_policies.py` runs without SmolLM2 here (`--no-smollm`): with it, it takes
about six minutes on 2 cores; SmolLM2 itself is tested in test_policies.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = {
    "record_and_replay.py": (["--db", "runs.db"], ["matched=True", "changed agent"]),
    "optimize_react_agent.py": ([], ["mcts:", "Final: The answer is"]),
    "export_training_data.py": (["out"], ["prm:", "an SFT row:", "spans:"]),
    "train_reward_model.py": (["out"], ["MCTS with the trained reward model: outcome"]),
    "textworld_env.py": (["--cache", "games"], ["restore by replay from reset"]),
    "offline_policies.py": (["--no-smollm", "--states", "20", "--games", "1"], ["minilm(T=0)", "random"]),
    "learn_own_graph.py": (["out"], ["decisions read: ", "on base node (scores)", "greedy success on unseen"]),
    "learn_from_search.py": (["out"], ["before training, greedy: reward 0.0", "after training, greedy: reward 1.0", "evolve round 1"]),
}


def test_every_example_is_covered() -> None:
    assert sorted(CASES) == sorted(p.name for p in EXAMPLES.glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs_offline(name: str, tmp_path: Path) -> None:
    args, expected = CASES[name]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRAJGRAPH_CACHE": str(tmp_path / "cache")}
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[var] = "http://127.0.0.1:9"  # a dead proxy: any network use fails loudly
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for text in expected:
        assert text in done.stdout, (text, done.stdout[-2000:])
    if name == "learn_own_graph.py":  # every decision step the searches stored is read back (issue 22)
        read = re.search(r"decisions read: (\d+) of (\d+) decision steps", done.stdout)
        assert read is not None and int(read[1]) == int(read[2]) > 0, done.stdout[-2000:]
