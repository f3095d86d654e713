#!/usr/bin/env bash
# Peak RSS of `cclake ingest` on one export object of about 1 GB (and of 250 MB and 500 MB,
# to see how memory grows with the object): NDJSON windows made by `cclake generate`,
# concatenated into one object. Prints time and peak RSS per size.
#
#   benches/big_object.sh          # ~3 minutes, ~3 GB of disk under WORK
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:-/tmp/cclake-big-object}
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/cclake"
if [ ! -f "$work/exports/_manifest.json" ]; then
  "$bin" generate --out "$work/exports" --interactions 2200000 --days 4 --seed 5 > /dev/null
fi
for mb in 250 500 1000; do
  rm -rf "$work/source-$mb" "$work/lake-$mb" && mkdir -p "$work/source-$mb"
  # Whole NDJSON windows until the object reaches the size.
  for f in "$work"/exports/*/*.jsonl; do
    cat "$f" >> "$work/source-$mb/big.jsonl"
    [ "$(stat -c %s "$work/source-$mb/big.jsonl")" -ge $(( mb * 1000000 )) ] && break
  done
  size=$(stat -c %s "$work/source-$mb/big.jsonl")
  /usr/bin/time -f "%e %M" -o "$work/time-$mb" "$bin" ingest --source "$work/source-$mb" --lake "$work/lake-$mb" --no-auto-compact ${BATCH_ROWS:+--batch-rows $BATCH_ROWS} > /dev/null
  read -r seconds kb < "$work/time-$mb"
  printf 'object of %d MB: %s s, peak RSS %d MB\n' "$(( size / 1000000 ))" "$seconds" "$(( kb / 1024 ))"
  rm -rf "$work/lake-$mb" "$work/source-$mb"
done
