"""16 Flight SQL clients (ADBC, one connection each) run the KPI suite (benches/kpi/*.sql)
over and over while the server's scheduled ingest commits new export objects: a feeder
copies one generated export object into the source folder every second. Prints errors,
per-query latency percentiles, queries per second and the commits seen.

usage: concurrent_clients.py GRPC_URL USER PASSWORD SOURCE_DIR SPARE_EXPORTS_DIR [SECONDS] [CLIENTS]"""
import glob
import os
import shutil
import statistics
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as flightsql

url, user, password, source, spare = sys.argv[1:6]
seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 60
clients = int(sys.argv[7]) if len(sys.argv) > 7 else 16
here = os.path.dirname(os.path.abspath(__file__))
suite = [(os.path.basename(p)[:-4], open(p).read()) for p in sorted(glob.glob(os.path.join(here, "kpi", "*.sql")))]
stop = time.monotonic() + seconds
latencies = {name: [] for name, _ in suite}
errors = []
lock = threading.Lock()


def client():
    conn = flightsql.connect(url, db_kwargs={"username": user, "password": password}, autocommit=True)
    while time.monotonic() < stop:
        for name, sql in suite:
            start = time.perf_counter()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    cur.fetch_arrow_table()
            except Exception as e:  # every failure counts
                with lock:
                    errors.append(f"{name}: {e}")
                continue
            with lock:
                latencies[name].append(time.perf_counter() - start)
    conn.close()


def feeder():
    # New objects while spare ones last, then re-deliveries of them (each a new object too).
    objects = sorted(glob.glob(os.path.join(spare, "**", "*.jsonl"), recursive=True))
    fed = 0
    while time.monotonic() < stop:
        shutil.copy(objects[fed % len(objects)], os.path.join(source, f"fed-{fed:05}.jsonl"))
        fed += 1
        time.sleep(1)
    return fed


def count_rows():
    conn = flightsql.connect(url, db_kwargs={"username": user, "password": password}, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM fact_interactions")
        n = cur.fetchone()[0]
    conn.close()
    return n


before = count_rows()
threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads:
    t.start()
fed = feeder()
for t in threads:
    t.join()
after = count_rows()
total = sum(len(v) for v in latencies.values())
print(f"{clients} clients for {seconds:.0f} s; {fed} export objects fed; fact_interactions {before} -> {after} rows")
print(f"queries: {total} ok, {len(errors)} errors, {total / seconds:.1f} queries/s")
for e in errors[:5]:
    print("  error:", e[:300])
all_latencies = sorted(x for v in latencies.values() for x in v)
for name, values in list(latencies.items()) + [("all", all_latencies)]:
    if values:
        values = sorted(values)
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        print(f"  {name:28} n={len(values):5}  p50 {statistics.median(values) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms")
sys.exit(1 if errors or after <= before else 0)
