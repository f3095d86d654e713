#!/usr/bin/env bash
# 16 concurrent Flight SQL clients run the KPI suite for 60 s against `cclake serve` whose
# scheduled ingest (--ingest-from, --interval 1s) commits an export object fed every second.
# Uses a copy of the lake of benches/kpi_vs_duckdb.sh (run first if missing). Prints errors
# (the target is 0), latency percentiles per query and the rows the commits added.
#
#   benches/concurrent.sh            # SECONDS=60 CLIENTS=16
set -euo pipefail
cd "$(dirname "$0")/.."
interactions=${INTERACTIONS:-200000}
days=${DAYS:-7}
work=${WORK:-/tmp/cclake-bench-$interactions-$days}
python="$(scripts/python-env.sh --bench)"
bin="${CARGO_TARGET_DIR:-target}/release/cclake"
[ -d "$work/duckdb-genesys" ] || benches/kpi_vs_duckdb.sh
rm -rf "$work/concurrent" && mkdir -p "$work/concurrent/source"
cp -r "$work/lake" "$work/concurrent/lake"
# Exports the lake has not seen: a different seed and start.
"$bin" generate --out "$work/concurrent/spare" --interactions 20000 --days 2 --seed 99 > /dev/null
echo -n bench-pw | "$bin" user add --config "$work/concurrent/bench.toml" --name bench --role auditor --password-stdin >/dev/null
CCLAKE_LOG=info "$bin" serve --lake "$work/concurrent/lake" --config "$work/concurrent/bench.toml" --addr 127.0.0.1:0 \
  --ingest-from "$work/concurrent/source" --interval 1s > "$work/concurrent/serve.out" 2> "$work/concurrent/serve.err" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
while ! grep -q listening "$work/concurrent/serve.out" 2>/dev/null; do sleep 0.1; done
url=$(sed 's/listening on //' "$work/concurrent/serve.out")
"$python" benches/concurrent_clients.py "$url" bench bench-pw "$work/concurrent/source" "$work/concurrent/spare" "${SECONDS_RUN:-60}" "${CLIENTS:-16}"
echo "ingest passes committed: $(grep -c 'batch committed' "$work/concurrent/serve.err" || true)"
