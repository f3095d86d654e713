"""Freshness: the time from an export object written to its row visible to a Flight SQL
query, with `cclake serve --ingest-from SOURCE --interval 1s`, once OBJECTS objects are
already ingested. The source is a bucket on a loopback S3 server (moto), or a local folder
with --local. Prints p50, p95 and max over SAMPLES objects written one after another.

usage: freshness.py CCLAKE_BIN WORK_DIR [--objects 20000] [--samples 20] [--local]"""
import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql

parser = argparse.ArgumentParser()
parser.add_argument("bin")
parser.add_argument("work")
parser.add_argument("--objects", type=int, default=20000)
parser.add_argument("--samples", type=int, default=20)
parser.add_argument("--local", action="store_true")
args = parser.parse_args()

shutil.rmtree(args.work, ignore_errors=True)
os.makedirs(args.work)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(i, prefix):
    return json.dumps({"event_id": f"{prefix}-{i}", "interaction_id": f"i-{prefix}-{i}", "timestamp": "2024-03-04T09:00:00Z",
                       "type": "voice", "state": "completed", "queue_name": "Billing", "duration_seconds": 60}) + "\n"


env = dict(os.environ)
children = []
if args.local:
    source = os.path.join(args.work, "source")
    os.makedirs(source)

    def put(key, body):
        path = os.path.join(source, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(body)
        os.rename(path + ".tmp", path)
else:
    import boto3
    port = free_port()
    moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
    children.append(subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    endpoint = f"http://127.0.0.1:{port}"
    env.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "AWS_CONDITIONAL_PUT": "etag"})
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    for _ in range(100):
        try:
            s3.create_bucket(Bucket="exports")
            break
        except Exception:
            time.sleep(0.1)
    source = "s3://exports/"

    def put(key, body):
        s3.put_object(Bucket="exports", Key=key, Body=body.encode())

start = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(16) as pool:
    list(pool.map(lambda i: put(f"2024/03/04/backlog-{i:06}.jsonl", event(i, "old")), range(args.objects)))
print(f"{args.objects} objects written to {source} in {time.perf_counter() - start:.1f} s")

# The backlog, ingested once by `cclake ingest` (which creates the lake `serve` opens).
lake = os.path.join(args.work, "lake")
start = time.perf_counter()
subprocess.run([args.bin, "ingest", "--source", source, "--lake", lake], env=env, check=True, stdout=subprocess.DEVNULL)
print(f"backlog ingested by `cclake ingest` in {time.perf_counter() - start:.1f} s")
config = os.path.join(args.work, "bench.toml")
subprocess.run([args.bin, "user", "add", "--config", config, "--name", "bench", "--role", "auditor", "--password-stdin"],
               input=b"bench-pw", check=True, stdout=subprocess.DEVNULL)
out = open(os.path.join(args.work, "serve.out"), "w+")
children.append(subprocess.Popen([args.bin, "serve", "--lake", lake, "--config", config,
                                  "--addr", "127.0.0.1:0", "--ingest-from", source, "--interval", "1s"],
                                 stdout=out, stderr=open(os.path.join(args.work, "serve.err"), "w"), env=env))
try:
    while "listening" not in open(out.name).read():
        if children[-1].poll() is not None:
            sys.exit("cclake serve stopped: " + open(os.path.join(args.work, "serve.err")).read()[-2000:])
        time.sleep(0.1)
    url = open(out.name).read().split("listening on ")[1].split()[0]
    conn = flightsql.connect(url, db_kwargs={"username": "bench", "password": "bench-pw"}, autocommit=True)

    def count(sql):
        with conn.cursor() as cur:
            try:
                cur.execute(sql)
                return cur.fetchone()[0]
            except Exception:
                return 0

    while count("SELECT count(*) FROM fact_interactions") < args.objects:
        time.sleep(0.5)
    # The server's first pass lists the source whole (as it does every 5 minutes): one
    # warm-up object, not counted, lands after it.
    # Named to sort before the samples: a pass lists only the keys after the greatest seen.
    put("2024/03/05/a-warm-up.jsonl", event(0, "warm"))
    start = time.perf_counter()
    while count("SELECT count(*) FROM fact_interactions WHERE event_id = 'warm-0'") < 1:
        time.sleep(0.02)
    print(f"warm-up object (after the first, whole listing) visible in {time.perf_counter() - start:.2f} s")
    delays = []
    for i in range(args.samples):
        put(f"2024/03/05/b-new-{i:04}.jsonl", event(i, "new"))
        written = time.perf_counter()
        while count(f"SELECT count(*) FROM fact_interactions WHERE event_id = 'new-{i}'") < 1:
            time.sleep(0.02)
        delays.append(time.perf_counter() - written)
        time.sleep(0.3)
    delays.sort()
    p95 = delays[min(len(delays) - 1, int(len(delays) * 0.95))]
    print(f"freshness over {len(delays)} objects ({'local folder' if args.local else 'S3 (moto)'}, {args.objects} objects already ingested): "
          f"p50 {statistics.median(delays):.2f} s, p95 {p95:.2f} s, max {delays[-1]:.2f} s")
finally:
    for child in children:
        child.terminate()
