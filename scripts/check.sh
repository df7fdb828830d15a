#!/usr/bin/env bash
# Static checks and the oldest-LangGraph job, run by .ci/run before the tests.
#   ruff and mypy over every Python file in the repository (the library, graphs/, adapters/, tests/,
#   benchmarks/, examples/);
#   the LangGraph seam (trajgraph/_internal/langgraph.py) and the suites that lean on it, against the
#   oldest LangGraph the project supports (installed beside the venv, shadowing the newest).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

$PY -m ruff check .  # the library, graphs/, adapters/, tests/, benchmarks/, examples/ (what .gitignore leaves)
bash scripts/mypy.sh  # mypy over the installed layout (graphs/, adapters/ as trajgraph.graphs/.adapters), tests/, benchmarks/, examples/

# the oldest releases pyproject.toml allows; langgraph-checkpoint 4.0.1 is the first whose JsonPlusSerializer
# takes allowed_msgpack_modules (trajgraph/_hermetic.strict_serde: a checkpoint revives no class it does not name)
MIN=.langgraph-min
PINS="langgraph==1.0.6 langgraph-checkpoint==4.0.1 langgraph-checkpoint-sqlite==3.0.1 langgraph-prebuilt==1.0.6"
if [ "$(cat "$MIN/.pins" 2>/dev/null)" != "$PINS" ]; then
    rm -rf "$MIN"
    # shellcheck disable=SC2086  # one argument per pin
    $PY -m pip install -q --no-deps --target "$MIN" $PINS
    echo "$PINS" > "$MIN/.pins"
fi
PYTHONPATH="$MIN" $PY -c "import importlib.metadata as m, langgraph.pregel as p, os
v = (m.version('langgraph'), m.version('langgraph-checkpoint'))
assert v == ('1.0.6', '4.0.1') and p.__file__.startswith(os.path.abspath('$MIN')), (v, p.__file__)"
# langchain's create_agent needs a newer langgraph-prebuilt than 1.0.6 (langchain's pin, not ours)
if ! out=$(PYTHONPATH="$MIN" $PY -m pytest -p no:cacheprovider \
    tests/test_langgraph_compat.py tests/test_record.py tests/test_nested_graphs.py tests/test_replay.py \
    tests/test_optimize.py tests/test_optimizers.py -k "not langchain_create_agent" 2>&1); then
    echo "$out" | tail -n 40
    echo "check: the tests above fail against langgraph 1.0.6 (the oldest supported; .langgraph-min)" >&2
    exit 1
fi
echo "$out" | tail -n 1 | sed 's/^/langgraph 1.0.6: /'
echo "check: ruff, mypy and langgraph 1.0.6 clean"
