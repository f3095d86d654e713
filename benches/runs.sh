# Sourced by benches/ingest_vs_duckdb.sh and benches/details_vs_duckdb.sh: how a timed run is
# taken and summed up.

# The median of the numbers on standard input, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Removes an output folder and writes the page cache's dirty pages back (`sync`): a timed run
# must not pay for the writes of the one before it (at 10M events, 1.5 GB of Parquet).
fresh() { rm -rf "$1"; sync; }

# One timed cclake ingest of $work/exports into a fresh $work/lake with the release binary
# $bin: its seconds appended to the array cclake_times, its peak RSS (KB) in
# $work/cclake.rss, its summary in $work/cclake.out.
time_cclake_ingest() {
  fresh "$work/lake"
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/cclake.rss" "$bin" ingest --source "$work/exports" --lake "$work/lake" --no-auto-compact > "$work/cclake.out"
  end=$(date +%s.%N)
  cclake_times+=("$(echo "$end - $start" | bc -l)")
}
