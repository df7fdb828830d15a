#!/usr/bin/env bash
# mypy over the package as it installs: graphs/ and adapters/ are top-level folders that install as
# trajgraph.graphs and trajgraph.adapters (package-dir in pyproject.toml), a mapping mypy cannot read.
# Run from the repository, mypy would name them `graphs.*` and `adapters.*` and find no
# `trajgraph.graphs` / `trajgraph.adapters` to check their imports of each other against.
# So this builds a throwaway tree of symlinks with the installed layout,
#   $TMP/trajgraph/<each entry of trajgraph/>, $TMP/trajgraph/graphs -> graphs/, $TMP/trajgraph/adapters -> adapters/,
# runs mypy there with pyproject.toml's [tool.mypy] (its cache stays in ./.mypy_cache) over the package and
# tests/, benchmarks/, examples/, and names the files in its messages by their paths in the repository.
# Usage: bash scripts/mypy.sh [mypy options]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PY="$ROOT/.venv/bin/python"

SHADOW="$(mktemp -d)"
trap 'rm -rf "$SHADOW"' EXIT
mkdir "$SHADOW/trajgraph"
for entry in trajgraph/* trajgraph/.[!.]*; do
    [ -e "$entry" ] || continue
    case "$(basename "$entry")" in graphs | adapters) echo "mypy.sh: trajgraph/$(basename "$entry") would hide the top-level folder of that name" >&2; exit 2 ;; esac
    ln -s "$ROOT/$entry" "$SHADOW/trajgraph/"
done
ln -s "$ROOT/graphs" "$SHADOW/trajgraph/graphs"
ln -s "$ROOT/adapters" "$SHADOW/trajgraph/adapters"
# tests/, benchmarks/ and examples/ sit beside the package as in the repository: tests/ is a namespace
# package (`from tests._services import ...`, explicit_package_bases names its modules tests.*), and the
# benchmark scripts import their sibling `_table` as the top-level module they run beside (mypy_path).
for extra in tests benchmarks examples; do ln -s "$ROOT/$extra" "$SHADOW/$extra"; done

# files: the whole installed package and the three folders beside it (pyproject's `files` lists the package
# folders for editors and a bare `mypy`, which checks graphs/ and adapters/ under the wrong names).
cd "$SHADOW"
set +e
MYPYPATH="$SHADOW/benchmarks" "$PY" -m mypy --config-file "$ROOT/pyproject.toml" --cache-dir "$ROOT/.mypy_cache" \
    --explicit-package-bases "$@" trajgraph tests benchmarks examples \
    | sed -e 's#^trajgraph/graphs/#graphs/#' -e 's#^trajgraph/adapters/#adapters/#'
status=${PIPESTATUS[0]}
set -e
exit "$status"
