#!/usr/bin/env bash
# KPI queries (benches/kpi/*.sql) over a lake of 400k flat events and 40k Genesys
# conversations, through cclake's Flight SQL server and in-process (`cargo bench --bench kpi`),
# and the same SQL in DuckDB in-process over its own partitioned Parquet of the same data.
# Reuses the exports, lake and DuckDB copy of benches/ingest_vs_duckdb.sh (run first if
# missing), adds generated conversation details to that lake. Prints per-query medians and
# ratios duckdb/cclake, and their geometric means. About 5 minutes. cclake keeps the newest
# files decoded in memory as a server does (decoded_cache_mb, default 1024);
# DECODED_MB=0 measures it reading every file from Parquet. DuckDB runs twice: over its
# Parquet (views) and over its own tables loaded from it (in memory).
set -euo pipefail
cd "$(dirname "$0")/.."
interactions=${INTERACTIONS:-200000}
days=${DAYS:-7}
work=${WORK:-/tmp/cclake-bench-$interactions-$days}
decoded_mb=${DECODED_MB:-1024}
python="$(scripts/python-env.sh --bench)"
bin="${CARGO_TARGET_DIR:-target}/release/cclake"
[ -d "$work/lake" ] && [ -d "$work/duckdb-out" ] || benches/ingest_vs_duckdb.sh
if [ ! -f "$work/genesys-exports/_genesys_manifest.json" ]; then
  "$bin" generate --shape details --out "$work/genesys-exports" --interactions 40000 --days "$days" --seed 1 > /dev/null
fi
if [ "$("$bin" query --lake "$work/lake" --format csv "SELECT count(*) > 0 AS n FROM conversations" | tail -1)" != "true" ]; then
  "$bin" ingest --source "$work/genesys-exports" --lake "$work/lake" > /dev/null
  rm -rf "$work/duckdb-genesys"
fi
"$bin" compact --lake "$work/lake"
[ -d "$work/duckdb-genesys" ] || "$python" benches/duckdb_genesys_copy.py "$work/lake" "$work/duckdb-genesys"
# In-process first (criterion writes its medians under the target folder), then over Flight.
# IN_PROCESS=0 skips the in-process half.
if [ "${IN_PROCESS:-1}" != 0 ]; then
  CCLAKE_BENCH_LAKE="$work/lake" CCLAKE_BENCH_DECODED_MB="$decoded_mb" cargo bench --quiet --bench kpi > "$work/kpi-in-process.out" 2>&1
fi
rm -f "$work/bench.toml"
printf '[server]\ndecoded_cache_mb = %s\n' "$decoded_mb" > "$work/bench.toml"
echo -n bench-pw | "$bin" user add --config "$work/bench.toml" --name bench --role auditor --password-stdin >/dev/null
"$bin" serve --lake "$work/lake" --config "$work/bench.toml" --addr 127.0.0.1:0 > "$work/serve.out" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
while ! grep -q listening "$work/serve.out" 2>/dev/null; do sleep 0.1; done
url=$(sed 's/listening on //' "$work/serve.out")
criterion=()
[ "${IN_PROCESS:-1}" = 0 ] || criterion=("${CARGO_TARGET_DIR:-target}/criterion")
CCLAKE_SERVER_PID=$server "$python" benches/kpi_bench.py "$url" bench bench-pw "$work/duckdb-out" "$work/duckdb-genesys" 15 "${criterion[@]}"
