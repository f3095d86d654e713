#!/usr/bin/env bash
# Makes (or refreshes, when their requirements changed) the Python venvs holding the real
# clients the tests and benches drive, and prints the main venv's interpreter:
#   .venv              deltalake, duckdb, pyarrow, moto, ADBC, sqlalchemy-adbc, pandas, polars
#   .venv-sqlalchemy1  flightsql-dbapi, which needs SQLAlchemy 1.x
# With --bench, makes and prints the benches' venv instead (.venv-bench: the newest DuckDB).
set -euo pipefail
cd "$(dirname "$0")/.."

make_venv() {
  local venv=$1 requirements=$2
  if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/.requirements"; then
    echo "making the Python venv in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$venv/.requirements"
  fi
}

if [ "${1:-}" = --bench ]; then
  make_venv .venv-bench benches/requirements.txt
  echo "$PWD/.venv-bench/bin/python"
  exit 0
fi
make_venv .venv tests/python/requirements.txt
make_venv .venv-sqlalchemy1 tests/python/requirements-sqlalchemy1.txt
echo "$PWD/.venv/bin/python"
