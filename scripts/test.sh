#!/usr/bin/env bash
# Runs every test on a fresh machine: checks the code's shape (no module cycle at any level,
# files and functions within bounds), makes the Python venv that the interoperability and S3
# tests use (scripts/python-env.sh), then runs `cargo test`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/module-cycles.py
python3 scripts/code-shape.py
CCLAKE_PYTHON="$(scripts/python-env.sh)"
export CCLAKE_PYTHON
exec cargo test "$@"
