#!/usr/bin/env bash
# Replays the attacks of issues 7 and 26 against a release build and prints what each cost the server
# (peak memory, SELECT 1 latency during it, sign-in timings), plus the gzip bomb against
# `cclake ingest`. Each attack gets a fresh server, so each peak is its own.
# Needs: a release build (cargo build --release), Python venv (made here). Takes ~4 minutes.
#   BIN=path/to/cclake benches/attacks.sh      # e.g. an older build, for a before/after
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(scripts/python-env.sh --bench)"
bin="${BIN:-${CARGO_TARGET_DIR:-target}/release/cclake}"
work=${WORK:-/tmp/cclake-attacks}
rm -rf "$work" && mkdir -p "$work"
cp -r testdata/exports "$work/exports"
"$bin" ingest --source "$work/exports" --lake "$work/lake" > /dev/null
echo -n analyst-pw | "$bin" user add --config "$work/cclake.toml" --name ana --role analyst --password-stdin > /dev/null
echo -n auditor-pw | "$bin" user add --config "$work/cclake.toml" --name aud --role auditor --password-stdin > /dev/null
sed -i -e 's/^query_memory_limit_mb = .*/query_memory_limit_mb = 256/' -e 's/^query_timeout_seconds = .*/query_timeout_seconds = 5/' "$work/cclake.toml"

attack() {
  local name=$1 settings=${2:-}
  cp "$work/cclake.toml" "$work/attack.toml"
  [ -n "$settings" ] && sed -i "$settings" "$work/attack.toml"
  "$bin" serve --lake "$work/lake" --config "$work/attack.toml" --addr 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.err" &
  local server=$!
  while ! grep -q listening "$work/serve.out" 2>/dev/null; do sleep 0.1; done
  echo "== $name"
  "$python" benches/attacks.py "$name" "$(sed 's/listening on //' "$work/serve.out")" "$server" || true
  if kill -0 $server 2>/dev/null; then kill $server; else echo "the server died: $(tail -c 300 "$work/serve.err")"; fi
  wait $server 2>/dev/null || true
}

attack repeat
attack functions
attack levenshtein
attack long
attack flood
attack deep
attack filter
attack plans
# Sign-in timing with pauses out of the way: it measures the password check itself.
attack timing 's/^failed_sign_ins_before_pause = .*/failed_sign_ins_before_pause = 100000/'

echo "== gzip bomb: one line 13.2M times, ingested"
"$python" - "$work/bomb/bomb.jsonl.gz" <<'PY'
import gzip, os, sys
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
line = b'{"event_id":"b1","interaction_id":"i1","timestamp":"2024-03-04T09:00:00Z","queue_name":"Support","agent_id":"a1","state":"completed","duration_seconds":30,"type":"voice","direction":"inbound","source_system":"GENESYS_CLOUD"}\n'
chunk = line * 100_000
with gzip.open(sys.argv[1], "wb", compresslevel=9) as f:
    for _ in range(132):
        f.write(chunk)
print(f"bomb: {os.path.getsize(sys.argv[1]) / 1e6:.1f} MB compressed, {len(chunk) * 132 / 1e9:.2f} GB expanded")
PY
/usr/bin/env time -f "ingest: %e s, peak memory %M KB (GNU time)" "$bin" ingest --source "$work/bomb" --lake "$work/bomb-lake" | grep -E "unreadable|peak|records:" || true

echo "== 100,000 one-event objects, ingested"
"$python" - "$work/tiny" <<'PY'
import os, sys
for i in range(100_000):
    d = os.path.join(sys.argv[1], f"{i // 1000:03d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"e{i:06d}.jsonl"), "w") as f:
        f.write('{"event_id":"e%d","interaction_id":"i%d","timestamp":"2024-03-04T09:%02d:00Z","queue_name":"Q%d","state":"completed"}\n' % (i, i, i % 60, i % 5))
PY
/usr/bin/env time -f "ingest: %e s, peak memory %M KB (GNU time)" "$bin" ingest --source "$work/tiny" --lake "$work/tiny-lake" | grep -E "objects:|commits|peak" || true

echo "== one object of 100,000 queue names, ingested"
"$python" - "$work/queues/queues.jsonl" <<'PY'
import json, os, sys
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
with open(sys.argv[1], "w") as f:
    for i in range(100_000):
        f.write(json.dumps({"event_id": f"e{i}", "interaction_id": f"i{i}", "timestamp": "2024-03-04T09:00:00Z",
                            "queue_name": f"Queue {i:06d} of an exploding export", "agent_id": "a1", "state": "completed",
                            "duration_seconds": 30, "type": "voice", "direction": "inbound", "source_system": "GENESYS_CLOUD"}) + "\n")
PY
/usr/bin/env time -f "ingest: %e s, peak memory %M KB (GNU time)" "$bin" ingest --source "$work/queues" --lake "$work/queues-lake" | grep -E "records:|too_many|peak" || true
echo "partition folders: $(find "$work/queues-lake/fact_interactions" -mindepth 2 -maxdepth 2 -type d | wc -l)"

echo "== records the lake cannot store (a 250-character queue name, epoch 1e18, year 0), ingested twice"
mkdir -p "$work/unstorable"
{
  echo '{"event_id":"ok1","interaction_id":"i1","timestamp":"2024-03-04T09:00:00Z","queue_name":"Support"}'
  echo "{\"event_id\":\"long\",\"interaction_id\":\"i2\",\"timestamp\":\"2024-03-04T09:00:00Z\",\"queue_name\":\"$(printf 'q%.0s' $(seq 250))\"}"
  echo '{"event_id":"e18","interaction_id":"i3","timestamp":1000000000000000000,"queue_name":"Support"}'
  echo '{"event_id":"y0","interaction_id":"i4","timestamp":"0000-01-01T00:00:00Z","queue_name":"Support"}'
  echo '{"event_id":"ok2","interaction_id":"i5","timestamp":"2024-03-04T10:00:00Z","queue_name":"Billing"}'
} > "$work/unstorable/mixed.jsonl"
for pass in 1 2; do
  "$bin" ingest --source "$work/unstorable" --lake "$work/unstorable-lake" | grep -E "^records:|already ingested|quarantined " || echo "pass $pass failed"
done
