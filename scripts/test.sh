#!/usr/bin/env bash
# Runs every test on a fresh machine: makes (or refreshes) the Python venv that the
# interoperability and S3 tests use, then runs `cargo test`. Extra arguments go to cargo test.
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
export CCLAKE_PYTHON="$PWD/$venv/bin/python"
# Dependencies are built once and reused across clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cclake-target}"
exec cargo test "$@"
