"""KPI suite: each benches/kpi/*.sql over cclake's Flight SQL server (ADBC client, results
fetched as Arrow) and over DuckDB in-process on a hive-partitioned Parquet copy of the same
data. Prints per-query medians and the ratio duckdb/cclake (>= 1.0: cclake at least as
fast), and the geometric mean of the ratios.

The flat queries read fact_interactions (DuckDB: its own Parquet, written by
duckdb_ingest.py from the same exports). The Genesys queries read cclake's views
(sql/views/*.sql); DuckDB runs the same view SQL (date_bin spelt time_bucket) over its own
partitioned Parquet copy of the lake's Genesys tables (GENESYS_DIR, made by kpi_vs_duckdb.sh).

usage: kpi_bench.py GRPC_URL USER PASSWORD PARQUET_DIR GENESYS_DIR [RUNS] [CRITERION_DIR]
With CRITERION_DIR (cargo bench --bench kpi's output), also prints the in-process ratios.
"""
import decimal
import glob
import math
import os
import statistics
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql
import duckdb

url, user, password, parquet, genesys = sys.argv[1:6]
runs = int(sys.argv[6]) if len(sys.argv) > 6 else 15
criterion = sys.argv[7] if len(sys.argv) > 7 else None
here = os.path.dirname(os.path.abspath(__file__))
views = os.path.join(here, "..", "sql", "views")

conn = flightsql.connect(url, db_kwargs={"username": user, "password": password}, autocommit=True)


def duckdb_over(kind):
    """DuckDB in-process over the same data: `parquet` reads its partitioned Parquet at each
    query (views); `native` loads it once into DuckDB's own tables (in memory), as a
    dashboard built on DuckDB does when Parquet is too slow."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    make = "VIEW" if kind == "parquet" else "TABLE"
    con.execute(f"CREATE {make} fact_interactions AS SELECT * FROM read_parquet('{parquet}/**/*.parquet', hive_partitioning = true)")
    for table in sorted(os.listdir(genesys)):
        con.execute(f"CREATE {make} {table} AS SELECT * FROM read_parquet('{genesys}/{table}/**/*.parquet', hive_partitioning = true)")
    # The Genesys views, in dependency order, as cclake defines them.
    for view in ["queue_names", "queue_session_metrics", "queue_interval_metrics", "queue_daily_metrics", "agent_daily_metrics"]:
        sql = open(os.path.join(views, view + ".sql")).read().replace("date_bin(", "time_bucket(")
        con.execute(f"CREATE VIEW {view} AS {sql}")
    return con


duck = duckdb_over("parquet")
native = duckdb_over("native")


def median_seconds(run):
    run()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# One cursor for every query, as the DuckDB side runs each on its one connection
# (`duck.execute`): an ADBC cursor is a statement of the Go driver, and making one per query
# costs the client about 1.8 ms of CPU (measured: `SELECT 1` 2.2 ms with a reused cursor,
# 3.7-4.4 ms with one per query). The cursor-per-query times are printed too.
shared_cursor = conn.cursor()


def cclake(sql):
    def run():
        shared_cursor.execute(sql)
        shared_cursor.fetch_arrow_table()
    return run


def cclake_cursor_per_query(sql):
    def run():
        with conn.cursor() as cur:
            cur.execute(sql)
            cur.fetch_arrow_table()
    return run


def duckdb_run(sql, con=None):
    con = con or duck
    return lambda: con.sql(sql).to_arrow_table()


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values))


def same_rows(sql):
    """Both engines give the same answer (numbers compared as rounded floats: float sums differ
    in the last bits, and an engine may type a whole number as a float or decimal)."""
    def value(v):
        if isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool):
            return f"{round(float(v), 6):.6f}"
        return str(v) if v is not None else ""

    def rows(table):
        return sorted(tuple(value(v) for v in r) for r in zip(*[c.to_pylist() for c in table.columns]))
    with conn.cursor() as cur:
        cur.execute(sql)
        ours = cur.fetch_arrow_table()
    return rows(ours) == rows(duck.sql(sql).to_arrow_table())


ratios = []
native_ratios = []
per_query_cursor_ratios = []
duck_ms = {}
disagree = []
print(f"duckdb {duckdb.__version__}")
suite = [(os.path.basename(p)[:-4], open(p).read()) for p in sorted(glob.glob(os.path.join(here, "kpi", "*.sql")))]
# Every query once, answers compared, before any is timed; then the server is given time to
# decode the columns they read (its cache keeps the columns queries read, decoded in the
# background) until its CPU is idle, as a dashboard's second refresh finds it. DuckDB's own
# tables were loaded before, untimed, likewise.
for name, sql in suite:
    if not same_rows(sql):
        print(f"{name}: cclake and DuckDB disagree")
        disagree.append(name)


def server_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


server_pid = os.environ.get("CCLAKE_SERVER_PID")
if server_pid:
    waited = time.perf_counter()
    before = server_cpu_seconds(server_pid)
    while time.perf_counter() - waited < 300:
        time.sleep(1)
        now = server_cpu_seconds(server_pid)
        if now - before < 0.05:
            break
        before = now
    print(f"server idle {time.perf_counter() - waited:.0f} s after the suite's first run")
print(f"{'query':28} {'rows':>6} {'cclake/Flight ms':>16} {'duckdb ms':>10} {'ratio':>7} {'native ms':>10} {'ratio':>7} {'cursor per query ms':>20} {'ratio':>7}")
for name, sql in suite:
    ours = median_seconds(cclake(sql))
    theirs = median_seconds(duckdb_run(sql))
    theirs_native = median_seconds(duckdb_run(sql, native))
    fresh = median_seconds(cclake_cursor_per_query(sql))
    ratios.append(theirs / ours)
    native_ratios.append(theirs_native / ours)
    per_query_cursor_ratios.append(theirs / fresh)
    duck_ms[name] = theirs * 1000
    n = duck.sql(f"SELECT count(*) FROM ({sql})").fetchall()[0][0]
    print(f"{name:28} {n:6} {ours * 1000:16.1f} {theirs * 1000:10.1f} {theirs / ours:7.2f} "
          f"{theirs_native * 1000:10.1f} {theirs_native / ours:7.2f} {fresh * 1000:20.1f} {theirs / fresh:7.2f}")
baseline = median_seconds(cclake("SELECT 1"))
fresh_baseline = median_seconds(cclake_cursor_per_query("SELECT 1"))
print(f"Flight round trip for SELECT 1: {baseline * 1000:.1f} ms ({fresh_baseline * 1000:.1f} ms with a cursor per query)")
if disagree:
    # Timings of different answers compare nothing (a lake missing the Genesys exports
    # answers its views in no time): no mean is printed, and the run fails.
    sys.exit(f"{len(disagree)} queries gave other rows than DuckDB ({', '.join(disagree)}): no ratio is meaningful")
print(f"geometric mean ratio duckdb/cclake over Flight SQL: {geomean(ratios):.2f} against DuckDB over its Parquet "
      f"({geomean(per_query_cursor_ratios):.2f} with a cursor per query); "
      f"{geomean(native_ratios):.2f} against DuckDB's own tables (lowest {min(native_ratios):.2f})")

if criterion:
    import json
    in_process = []
    print(f"{'query':28} {'in-process ms':>16} {'duckdb ms':>10} {'ratio':>7}")
    for name, theirs in duck_ms.items():
        path = os.path.join(criterion, "kpi_in_process", name, "new", "estimates.json")
        if not os.path.exists(path):
            continue
        ours = json.load(open(path))["median"]["point_estimate"] / 1e6
        in_process.append(theirs / ours)
        print(f"{name:28} {ours:16.1f} {theirs:10.1f} {theirs / ours:7.2f}")
    if in_process:
        print(f"geometric mean ratio duckdb/cclake in-process: {geomean(in_process):.2f}")

shared_cursor.close()
conn.close()
