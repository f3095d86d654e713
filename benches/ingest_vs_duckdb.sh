#!/usr/bin/env bash
# Bulk ingest of the same generated exports with cclake (release build) and with DuckDB
# (read_json -> latest delivery per event_id -> COPY ... PARTITION_BY (event_date, queue_name)),
# in two formulations: the lean one a DuckDB user writes (duckdb_ingest_lean.py: columns
# given, NDJSON read as NDJSON, QUALIFY) and one that lets DuckDB infer types
# (duckdb_ingest.py). Each side runs RUNS times (default 3) into a fresh output; prints the
# medians, cclake's peak RSS and the ratio DuckDB lean / cclake (>= 1.0: cclake at least as
# fast). Both must keep the same number of events.
#
#   benches/ingest_vs_duckdb.sh                 # 200k interactions (400k events) over 7 days
#   SHAPE=seed benches/ingest_vs_duckdb.sh      # the same, shaped like the seed's example
#   INTERACTIONS=20000 DAYS=2 benches/ingest_vs_duckdb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
interactions=${INTERACTIONS:-200000}
days=${DAYS:-7}
shape=${SHAPE:-flat}
runs=${RUNS:-3}
suffix=""
[ "$shape" = flat ] || suffix="-$shape"
work=${WORK:-/tmp/cclake-bench-$interactions-$days$suffix}
python="$(scripts/python-env.sh --bench)"

cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/cclake"
if [ ! -f "$work/exports/_manifest.json" ]; then
  "$bin" generate --shape "$shape" --out "$work/exports" --interactions "$interactions" --days "$days" --seed 1
fi
size=$(du -sb "$work/exports" | cut -f1)
objects=$(find "$work/exports" -type f ! -name '_*' | wc -l)
echo "exports ($shape): $(( size / 1000000 )) MB in $objects objects in $work/exports"

source benches/runs.sh
cclake_times=() lean_times=() auto_times=()
for run in $(seq "$runs"); do
  time_cclake_ingest
  fresh "$work/duckdb-out"
  read -r lean_s lean_rows < <("$python" benches/duckdb_ingest_lean.py "$work/exports" "$work/duckdb-out")
  lean_times+=("$lean_s")
  fresh "$work/duckdb-auto"
  auto_times+=("$("$python" benches/duckdb_ingest.py "$work/exports" "$work/duckdb-auto")")
done
cat "$work/cclake.out"
rows=$("$bin" query --lake "$work/lake" --format csv "SELECT count(*) AS n FROM fact_interactions" | tail -1)
[ "$rows" = "$lean_rows" ] || { echo "cclake kept $rows events, DuckDB $lean_rows: the runs compare nothing" >&2; exit 1; }
cclake_s=$(printf '%s\n' "${cclake_times[@]}" | median)
lean_s=$(printf '%s\n' "${lean_times[@]}" | median)
auto_s=$(printf '%s\n' "${auto_times[@]}" | median)
echo "duckdb $("$python" -c 'import duckdb; print(duckdb.__version__)'), $runs runs each, $rows events kept by both"
printf 'cclake ingest: %.3f s median (%s; peak RSS %d MB)\n' "$cclake_s" "${cclake_times[*]}" "$(( $(cat "$work/cclake.rss") / 1024 ))"
printf 'duckdb lean:   %.3f s median (%s)\n' "$lean_s" "${lean_times[*]}"
printf 'duckdb auto:   %.3f s median (%s)\n' "$auto_s" "${auto_times[*]}"
printf 'ratio duckdb lean/cclake: %.2f (>= 1.0: cclake at least as fast); auto/cclake: %.2f\n' \
  "$(echo "$lean_s / $cclake_s" | bc -l)" "$(echo "$auto_s / $cclake_s" | bc -l)"
