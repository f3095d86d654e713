#!/usr/bin/env bash
# Makes (or refreshes, when tests/python/requirements.txt changed) the Python venv in .venv
# holding the real clients the tests and benches drive: deltalake, duckdb, pyarrow, moto.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
requirements=tests/python/requirements.txt
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/.requirements"; then
  echo "making the Python venv in $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/.requirements"
fi
echo "$PWD/$venv/bin/python"
