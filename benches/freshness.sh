#!/usr/bin/env bash
# Freshness with `serve --ingest-from ... --interval 1s`: export object written -> row visible
# over Flight SQL, with 20,000 objects already ingested, on a loopback S3 server (moto) and
# on a local folder. Prints p50 / p95 / max over 20 objects each. About 10 minutes.
#
#   benches/freshness.sh              # OBJECTS=20000 SAMPLES=20
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(scripts/python-env.sh --bench)"
cargo build --release --quiet
bin="$(realpath "${CARGO_TARGET_DIR:-target}/release/cclake")"
work=${WORK:-/tmp/cclake-freshness}
"$python" -u benches/freshness.py "$bin" "$work/s3" --objects "${OBJECTS:-20000}" --samples "${SAMPLES:-20}"
"$python" -u benches/freshness.py "$bin" "$work/local" --objects "${OBJECTS:-20000}" --samples "${SAMPLES:-20}" --local
