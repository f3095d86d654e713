#!/usr/bin/env bash
# Bulk ingest of the same generated exports with cclake (release build) and with DuckDB
# (read_json -> dedup by event_id -> COPY ... PARTITION_BY (event_date, queue_name)).
# Prints wall times, peak RSS and the ratio duckdb_seconds / cclake_seconds (>= 1.0 means
# cclake is at least as fast).
#
#   benches/ingest_vs_duckdb.sh                 # 200k interactions (400k events) over 7 days
#   INTERACTIONS=20000 DAYS=2 benches/ingest_vs_duckdb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
interactions=${INTERACTIONS:-200000}
days=${DAYS:-7}
work=${WORK:-/tmp/cclake-bench-$interactions-$days}
python="$(scripts/python-env.sh)"

cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/cclake"
if [ ! -f "$work/exports/_manifest.json" ]; then
  "$bin" generate --out "$work/exports" --interactions "$interactions" --days "$days" --seed 1
fi
size=$(du -sb "$work/exports" | cut -f1)
echo "exports: $(( size / 1000000 )) MB in $work/exports"

rm -rf "$work/lake"
start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$work/cclake.rss" "$bin" ingest --source "$work/exports" --lake "$work/lake" --no-auto-compact > "$work/cclake.out"
end=$(date +%s.%N)
cclake_s=$(echo "$end - $start" | bc -l)
cat "$work/cclake.out"

rm -rf "$work/duckdb-out"
duck_s=$("$python" benches/duckdb_ingest.py "$work/exports" "$work/duckdb-out")

printf 'cclake ingest: %.3f s (peak RSS %d MB)\n' "$cclake_s" "$(( $(cat "$work/cclake.rss") / 1024 ))"
printf 'duckdb ingest: %.3f s\n' "$duck_s"
printf 'ratio duckdb/cclake: %.2f (>= 1.0: cclake at least as fast)\n' "$(echo "$duck_s / $cclake_s" | bc -l)"
