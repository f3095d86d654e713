#!/usr/bin/env bash
# A micro-batch into a big lake: 10k re-delivered events (corrected durations) and 10k new
# events, each as one new export object, into a lake of 10M events (5M interactions over 30
# days, made by `cclake generate` and one bulk ingest, then compacted). Prints each
# micro-batch's wall time and the files its upsert scanned and rewritten, and the
# partitions it touched. Needs ~8 GB of disk; the lake is kept for reruns (WORK=...).
#
#   benches/microbatch.sh                        # 10M events: ~15 minutes the first time
#   INTERACTIONS=500000 DAYS=7 benches/microbatch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
interactions=${INTERACTIONS:-5000000}
days=${DAYS:-30}
work=${WORK:-/tmp/cclake-micro-$interactions-$days}
python="$(scripts/python-env.sh --bench)"

cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/cclake"
if [ ! -f "$work/exports/_manifest.json" ]; then
  /usr/bin/time -f "generate: %e s, peak RSS %M KB" "$bin" generate --out "$work/exports" --interactions "$interactions" --days "$days" --seed 3
fi
if [ ! -d "$work/lake/fact_interactions" ]; then
  /usr/bin/time -f "bulk ingest: %e s, peak RSS %M KB" "$bin" ingest --source "$work/exports" --lake "$work/lake" --no-auto-compact
  /usr/bin/time -f "compact: %e s" "$bin" compact --lake "$work/lake"
fi
"$bin" query --lake "$work/lake" "SELECT count(*) AS events, count(DISTINCT event_date) AS dates, count(DISTINCT queue_name) AS queues FROM fact_interactions"

# 10k events of the middle day, delivered again with a changed duration, and 10k new ones.
rm -rf "$work/micro" && mkdir -p "$work/micro/redelivered" "$work/micro/new"
"$python" - "$work" <<'PY'
import glob, json, os, sys, uuid
work = sys.argv[1]
files = sorted(glob.glob(f"{work}/exports/*/interactions-*.jsonl"))
picked = []
for path in files[len(files) // 2:]:
    with open(path) as f:
        for line in f:
            picked.append(json.loads(line))
            if len(picked) == 10000:
                break
    if len(picked) == 10000:
        break
with open(f"{work}/micro/redelivered/batch.jsonl", "w") as out:
    for e in picked:
        e["duration_seconds"] = int(e.get("duration_seconds") or 0) + 1
        out.write(json.dumps(e) + "\n")
with open(f"{work}/micro/new/batch.jsonl", "w") as out:
    for e in picked:
        e["event_id"] = str(uuid.uuid4())
        out.write(json.dumps(e) + "\n")
touched = {(e["timestamp"][:10], e["queue_name"]) for e in picked}
print(f"micro-batch: {len(picked)} events touching at most {len(touched)} (date, queue) partitions")
PY
for kind in redelivered new; do
  rm -rf "$work/lake-$kind" && cp -r "$work/lake" "$work/lake-$kind"
  start=$(date +%s.%N)
  "$bin" ingest --source "$work/micro/$kind" --lake "$work/lake-$kind" --no-auto-compact > "$work/micro-$kind.out"
  end=$(date +%s.%N)
  printf '%s: %.3f s\n' "$kind" "$(echo "$end - $start" | bc -l)"
  grep -iE "commits|upserted|files" "$work/micro-$kind.out" || cat "$work/micro-$kind.out"
done
