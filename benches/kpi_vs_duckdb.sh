#!/usr/bin/env bash
# KPI queries (benches/kpi/*.sql) over a 400k-event lake through cclake's Flight SQL server,
# and the same SQL in DuckDB over a partitioned Parquet copy of the same exports.
# Reuses the exports, lake and DuckDB copy of benches/ingest_vs_duckdb.sh (run it first).
set -euo pipefail
cd "$(dirname "$0")/.."
interactions=${INTERACTIONS:-200000}
days=${DAYS:-7}
work=${WORK:-/tmp/cclake-bench-$interactions-$days}
python="$(scripts/python-env.sh)"
bin="${CARGO_TARGET_DIR:-target}/release/cclake"
[ -d "$work/lake" ] && [ -d "$work/duckdb-out" ] || benches/ingest_vs_duckdb.sh
"$bin" compact --lake "$work/lake"
rm -f "$work/bench.toml"
echo -n bench-pw | "$bin" user add --config "$work/bench.toml" --name bench --role auditor --password-stdin >/dev/null
"$bin" serve --lake "$work/lake" --config "$work/bench.toml" --addr 127.0.0.1:0 > "$work/serve.out" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
while ! grep -q listening "$work/serve.out" 2>/dev/null; do sleep 0.1; done
url=$(sed 's/listening on //' "$work/serve.out")
"$python" benches/kpi_bench.py "$url" bench bench-pw "$work/duckdb-out"
echo "in-process DataFusion on the same lake: CCLAKE_BENCH_LAKE=$work/lake cargo bench --bench kpi"
