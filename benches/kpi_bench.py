"""KPI suite: each benches/kpi/*.sql over cclake's Flight SQL server (ADBC client, results
fetched as Arrow) and over DuckDB in-process on a hive-partitioned Parquet copy of the same
exports. Prints per-query medians and the ratio duckdb/cclake (>= 1.0: cclake at least as
fast), and the geometric mean of the ratios.

usage: kpi_bench.py GRPC_URL USER PASSWORD PARQUET_DIR [RUNS]
"""
import glob
import math
import os
import statistics
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import duckdb

url, user, password, parquet = sys.argv[1:5]
runs = int(sys.argv[5]) if len(sys.argv) > 5 else 15
here = os.path.dirname(os.path.abspath(__file__))

conn = flightsql.connect(url, db_kwargs={"username": user, "password": password}, autocommit=True)
duck = duckdb.connect()
duck.execute(f"CREATE VIEW fact_interactions AS SELECT * FROM read_parquet('{parquet}/**/*.parquet', hive_partitioning = true)")


def median_seconds(run):
    run()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cclake(sql):
    def run():
        with conn.cursor() as cur:
            cur.execute(sql)
            cur.fetch_arrow_table()
    return run


def duckdb_run(sql):
    return lambda: duck.execute(sql).fetch_arrow_table()


ratios = []
print(f"{'query':28} {'cclake/Flight ms':>16} {'duckdb ms':>10} {'ratio':>7}")
for path in sorted(glob.glob(os.path.join(here, "kpi", "*.sql"))):
    sql = open(path).read()
    ours = median_seconds(cclake(sql))
    theirs = median_seconds(duckdb_run(sql))
    ratios.append(theirs / ours)
    name = os.path.basename(path)[:-4]
    print(f"{name:28} {ours * 1000:16.1f} {theirs * 1000:10.1f} {theirs / ours:7.2f}")
baseline = median_seconds(cclake("SELECT 1"))
print(f"Flight round trip for SELECT 1: {baseline * 1000:.1f} ms")
print(f"geometric mean ratio duckdb/cclake: {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}")
