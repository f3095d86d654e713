#!/usr/bin/env bash
# Ingest of the same generated Genesys conversation-detail exports (details pages, async job
# pages, gzipped NDJSON; queue/user/wrap-up code exports) by cclake (release build) and by
# DuckDB (read_json -> unnest -> metrics as Parquet partitioned by emit day), in two
# formulations: the lean one (duckdb_details_lean.py: the nested columns spelt out, pages read
# as JSON objects, QUALIFY) and one that lets DuckDB infer the shape (duckdb_details.py); both
# must write the same metric rows. A third DuckDB run (duckdb_details_tables.py, lean too)
# writes the four tables cclake writes, with their row counts checked against cclake's.
# Prints wall times, throughput in MB/s and conversations/s, and the ratios
# duckdb_seconds / cclake_seconds (>= 1.0 means cclake is at least as fast): medians of RUNS
# runs each (default 3).
#
#   benches/details_vs_duckdb.sh                  # 40k conversations over 7 days
#   CONVERSATIONS=5000 DAYS=2 benches/details_vs_duckdb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
conversations=${CONVERSATIONS:-40000}
days=${DAYS:-7}
runs=${RUNS:-3}
work=${WORK:-/tmp/cclake-details-$conversations-$days}
python="$(scripts/python-env.sh --bench)"

cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/cclake"
if [ ! -f "$work/exports/_genesys_manifest.json" ]; then
  "$bin" generate --shape details --out "$work/exports" --interactions "$conversations" --days "$days" --seed 1 > /dev/null
fi
size=$(du -sb "$work/exports/details" | cut -f1)
total=$(python3 -c "import json; m = json.load(open('$work/exports/_genesys_manifest.json')); print(m['conversations'])")
echo "details exports: $(( size / 1000000 )) MB, $total conversations in $work/exports"

source benches/runs.sh
cclake_times=() lean_times=() auto_times=() tables_times=()
for run in $(seq "$runs"); do
  time_cclake_ingest
  fresh "$work/duckdb-lean"
  read -r lean_s lean_rows < <("$python" benches/duckdb_details_lean.py "$work/exports/details" "$work/duckdb-lean")
  lean_times+=("$lean_s")
  fresh "$work/duckdb-out"
  auto_times+=("$("$python" benches/duckdb_details.py "$work/exports/details" "$work/duckdb-out")")
  fresh "$work/duckdb-tables"
  read -r tables_s tables_rows < <("$python" benches/duckdb_details_tables.py "$work/exports/details" "$work/duckdb-tables")
  tables_times+=("$tables_s")
done
grep -E "records|rows written to session_metrics" "$work/cclake.out"
cclake_s=$(printf '%s\n' "${cclake_times[@]}" | median)
lean_s=$(printf '%s\n' "${lean_times[@]}" | median)
duck_s=$(printf '%s\n' "${auto_times[@]}" | median)
tables_s=$(printf '%s\n' "${tables_times[@]}" | median)
echo "$runs runs each; cclake ${cclake_times[*]}; duckdb lean ${lean_times[*]}; duckdb auto ${auto_times[*]}; duckdb four tables ${tables_times[*]}"
auto_rows=$("$python" -c "import duckdb, sys; print(duckdb.sql(f\"SELECT count(*) FROM read_parquet('{sys.argv[1]}/**/*.parquet')\").fetchall()[0][0])" "$work/duckdb-out")
[ "$lean_rows" = "$auto_rows" ] || { echo "the two DuckDB formulations wrote $lean_rows and $auto_rows metric rows" >&2; exit 1; }
cclake_rows=$(sed -n 's/^  rows written to session_metrics: //p' "$work/cclake.out")
[ "$cclake_rows" = "$lean_rows" ] || { echo "cclake wrote $cclake_rows metric rows, DuckDB $lean_rows: the runs compare nothing" >&2; exit 1; }
cclake_tables=$(for t in conversations participant_sessions session_segments session_metrics; do
  sed -n "s/^  rows written to $t: //p" "$work/cclake.out"; done | paste -sd' ')
[ "$cclake_tables" = "$tables_rows" ] || { echo "four tables: cclake wrote $cclake_tables rows, DuckDB $tables_rows" >&2; exit 1; }

printf 'cclake ingest: %.3f s median, %.1f MB/s, %.0f conversations/s (peak RSS %d MB)\n' "$cclake_s" \
  "$(echo "$size / 1000000 / $cclake_s" | bc -l)" "$(echo "$total / $cclake_s" | bc -l)" "$(( $(cat "$work/cclake.rss") / 1024 ))"
printf 'duckdb lean:   %.3f s, %.1f MB/s, %.0f conversations/s (%s metric rows)\n' "$lean_s" \
  "$(echo "$size / 1000000 / $lean_s" | bc -l)" "$(echo "$total / $lean_s" | bc -l)" "$lean_rows"
printf 'duckdb auto:   %.3f s, %.1f MB/s, %.0f conversations/s\n' "$duck_s" \
  "$(echo "$size / 1000000 / $duck_s" | bc -l)" "$(echo "$total / $duck_s" | bc -l)"
printf 'duckdb tables: %.3f s writing the four tables cclake writes (%s rows)\n' "$tables_s" "$tables_rows"
printf 'ratio duckdb lean/cclake: %.2f, auto/cclake: %.2f, four tables/cclake: %.2f (>= 1.0: cclake at least as fast)\n' \
  "$(echo "$lean_s / $cclake_s" | bc -l)" "$(echo "$duck_s / $cclake_s" | bc -l)" "$(echo "$tables_s / $cclake_s" | bc -l)"
