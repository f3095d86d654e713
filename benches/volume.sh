#!/usr/bin/env bash
# Ingest at a day's volume, default settings and default stack (release build): a mid-size
# center's three days of every shape, and one day of 10k / 40k / 200k conversations delivered
# as one object and as 100 objects, then re-exported whole (every conversation of the day
# replaced in one pass). Prints wall time and peak memory per run, and asserts what the lake
# holds: the generator's conversation count, and `cclake check` finding every key once.
#
#   benches/volume.sh                       # 10000 40000 200000
#   SIZES="10000 40000" benches/volume.sh
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${SIZES:-10000 40000 200000}
work=${WORK:-/tmp/cclake-volume}
python="$(scripts/python-env.sh --bench)"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/cclake"
mkdir -p "$work"

# Runs `cclake ingest` into a new or existing lake; prints seconds and peak MB.
measure() {
  local label=$1 source=$2 lake=$3
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/rss" "$bin" ingest --source "$source" --lake "$lake" > "$work/out"
  end=$(date +%s.%N)
  printf '%-48s %7.2f s  %6d MB peak\n' "$label" "$(echo "$end - $start" | bc -l)" "$(( $(cat "$work/rss") / 1024 ))"
}

# Asserts the lake holds `expected` conversations and `cclake check` finds it sound.
verify() {
  local lake=$1 expected=$2
  local got
  got=$("$bin" query --lake "$lake" --format csv "SELECT count(*) AS n FROM conversations" | tail -1)
  [ "$got" = "$expected" ] || { echo "FAIL: $lake holds $got conversations, the generator wrote $expected"; exit 1; }
  "$bin" check --lake "$lake" > "$work/check" || { cat "$work/check"; echo "FAIL: cclake check"; exit 1; }
}

# A mid-size contact center's three days, every shape (the run that overflowed a stack).
all="$work/all-40000"
if [ ! -f "$all/exports/_genesys_manifest.json" ]; then
  "$bin" generate --shape all --out "$all/exports" --interactions 40000 --days 3 --seed 1 > /dev/null
fi
rm -rf "$all/lake"
measure "all shapes, 40k conversations over 3 days ($(du -sm "$all/exports" | cut -f1) MB)" "$all/exports" "$all/lake"
verify "$all/lake" "$(python3 -c "import json; print(json.load(open('$all/exports/_genesys_manifest.json'))['conversations'])")"

for n in $sizes; do
  dir="$work/day-$n"
  if [ ! -f "$dir/exports/_genesys_manifest.json" ]; then
    "$bin" generate --shape details --out "$dir/exports" --interactions "$n" --days 1 --seed 2 > /dev/null
    # The day's conversations as one NDJSON object, and as 100 (dimensions beside both).
    "$python" - "$dir" <<'EOF'
import gzip, json, pathlib, shutil, sys
dir = pathlib.Path(sys.argv[1])
conversations = []
for f in sorted((dir / "exports/details").rglob("*")):
    if f.is_dir():
        continue
    text = gzip.decompress(f.read_bytes()).decode() if f.suffix == ".gz" else f.read_text()
    if f.name.endswith(".jsonl.gz"):
        conversations += [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        conversations += json.loads(text)["conversations"]
for name, parts in (("one", 1), ("hundred", 100)):
    out = dir / name
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(dir / "exports/dimensions", out / "dimensions")
    size = -(-len(conversations) // parts)
    for i in range(parts):
        chunk = conversations[i * size:(i + 1) * size]
        if chunk:
            (out / f"details-{i:03}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chunk))
EOF
  fi
  expected=$(python3 -c "import json; print(json.load(open('$dir/exports/_genesys_manifest.json'))['conversations'])")
  mb=$(du -sm "$dir/one" | cut -f1)
  rm -rf "$dir/lake-one" "$dir/lake-hundred" "$dir/again"
  measure "$n conversations, one day, 1 object ($mb MB)" "$dir/one" "$dir/lake-one"
  verify "$dir/lake-one" "$expected"
  measure "$n conversations, one day, 100 objects" "$dir/hundred" "$dir/lake-hundred"
  verify "$dir/lake-hundred" "$expected"
  # Every conversation of the day exported again, later: all replaced in one pass.
  cp -r "$dir/hundred" "$dir/again"
  find "$dir/again" -type f -exec touch -d '+1 hour' {} +
  measure "$n conversations, the whole day re-exported" "$dir/again" "$dir/lake-hundred"
  verify "$dir/lake-hundred" "$expected"
  replaced=$("$bin" query --lake "$dir/lake-hundred" --format csv "SELECT count(*) AS n FROM conversations WHERE source_object LIKE '%/again/%'" | tail -1)
  [ "$replaced" = "$expected" ] || { echo "FAIL: $replaced of $expected conversations replaced"; exit 1; }
done
echo "ok"
