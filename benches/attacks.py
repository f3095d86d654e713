"""The attacks of issue 7, replayed against a running `cclake serve` (see attacks.sh), with
what they cost the server: its peak resident memory (VmHWM of its process, read from
/proc), the latency of `SELECT 1` on another connection during the attack, and the timing of
the two sign-in failures. Prints one line per figure.

usage: attacks.py ATTACK URL SERVER_PID
  ATTACK: repeat | functions | levenshtein | long | flood | timing | deep | filter | plans
"""
import statistics
import sys
import threading
import time

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight

ATTACK, URL, PID = sys.argv[1], sys.argv[2], int(sys.argv[3])
ANALYST = {"username": "ana", "password": "analyst-pw"}
AUDITOR = {"username": "aud", "password": "auditor-pw"}


def peak_rss_mb():
    try:
        with open(f"/proc/{PID}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except FileNotFoundError:
        return "(gone: the server died)"
    return -1


def connect(who=ANALYST):
    return flightsql.connect(URL, db_kwargs=who, autocommit=True)


def run(sql, who=ANALYST):
    start = time.monotonic()
    try:
        with connect(who) as conn, conn.cursor() as cur:
            cur.execute(sql)
            cur.fetch_arrow_table()
        outcome = "ok"
    except Exception as e:  # the error is the figure
        outcome = str(e).splitlines()[0][:160]
    return time.monotonic() - start, outcome


def select_1_latencies(stop, out):
    """SELECT 1 on one signed-in connection, again and again until `stop`."""
    with connect(AUDITOR) as conn:
        while not stop.is_set():
            start = time.monotonic()
            with conn.cursor() as cur:
                try:
                    cur.execute("SELECT 1")
                    cur.fetch_arrow_table()
                except Exception as e:
                    out.append(("error", str(e).splitlines()[0][:120]))
                    continue
            out.append(time.monotonic() - start)
            time.sleep(0.05)


def during(attacks):
    """Runs the attack threads while measuring SELECT 1; returns their results."""
    stop, latencies, results = threading.Event(), [], []
    probe = threading.Thread(target=select_1_latencies, args=(stop, latencies))
    probe.start()
    time.sleep(0.5)
    threads = [threading.Thread(target=lambda a=a: results.append(a())) for a in attacks]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    stop.set()
    probe.join()
    times = [x for x in latencies if isinstance(x, float)]
    errors = [x for x in latencies if not isinstance(x, float)]
    print(f"attack wall time: {elapsed:.2f} s")
    if times:
        print(f"SELECT 1 during the attack: {len(times)} answered, median {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms; {len(errors)} errors {errors[:1]}")
    return results


if ATTACK == "repeat":
    sql = "SELECT length(repeat('x', 1500000000))"
    for r in during([lambda: run(sql), lambda: run(sql)]):
        print(f"repeat: {r[0]:.2f} s, {r[1]}")
elif ATTACK == "functions":
    # Functions no list names (issue 26, item 2), each alone; then the server's CPU in the
    # second after the answer: a refused or timed-out query must stop working.
    def cpu_seconds():
        with open(f"/proc/{PID}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100

    rows = "FROM generate_series(1, 1000000) AS t(v)"
    for sql in [
        "SELECT length(concat(" + ", ".join(["repeat('x', 200000000)"] * 5) + "))",
        f"SELECT max(length(CAST(v AS VARCHAR) || repeat('x', 1000000))) {rows}",
        "SELECT max(length(queue_name || repeat('x', 1000000))) FROM fact_interactions",
        "SELECT length(encode(repeat('x', 200000000), 'hex'))",
        f"SELECT max(length(to_char(to_timestamp(v), repeat('%Y', 300000)))) {rows}",
        "SELECT length(translate(repeat('x', 200000000), 'x', 'y'))",
        f"SELECT max(length(upper(lpad(CAST(v AS VARCHAR), 20000, 'é')))) {rows}",
    ]:
        took, outcome = run(sql)
        before = cpu_seconds()
        time.sleep(1)
        print(f"{sql[:70]}: {took:.2f} s, {outcome[:90]}; CPU in the next second {cpu_seconds() - before:.2f} s; peak {peak_rss_mb()} MB")
elif ATTACK == "levenshtein":
    sql = "SELECT levenshtein(repeat('a', 100000), repeat('b', 100000))"
    for r in during([lambda: run(sql)]):
        print(f"levenshtein: {r[0]:.2f} s, {r[1]}")
elif ATTACK == "long":
    # Long work made of bounded calls: two of them keep both cores busy until the timeout.
    sql = "SELECT sum(levenshtein(repeat('a', v % 100 + 100), repeat('b', 100))) FROM generate_series(1, 50000000) AS t(v)"
    for r in during([lambda: run(sql), lambda: run(sql)]):
        print(f"long query: {r[0]:.2f} s, {r[1]}")
elif ATTACK == "flood":
    host, port = URL.split("//")[1].split(":")

    def wrong():
        client = flight.FlightClient(f"grpc://{host}:{port}")
        try:
            client.authenticate_basic_token("ana", "wrong")
            return "signed in?!"
        except Exception as e:
            return str(e).splitlines()[0][:80]

    outcomes = during([wrong] * 200)
    kinds = {}
    for o in outcomes:
        key = "wrong password" if "wrong user name" in o else "paused" if "failed sign-ins" in o else \
            "busy" if "busy" in o else o
        kinds[key] = kinds.get(key, 0) + 1
    print(f"200 wrong passwords: {kinds}")
elif ATTACK == "timing":
    host, port = URL.split("//")[1].split(":")
    client = flight.FlightClient(f"grpc://{host}:{port}")

    def median_ms(user):
        times = []
        for _ in range(100):
            start = time.monotonic()
            try:
                client.authenticate_basic_token(user, "wrong")
            except Exception:
                pass
            times.append(time.monotonic() - start)
        return statistics.median(times) * 1000

    print(f"sign-in failure median: unknown user {median_ms('nobody'):.2f} ms, "
          f"wrong password {median_ms('ana'):.2f} ms (100 tries each)")
elif ATTACK == "deep":
    # Issue 26: expressions as deep as their chains (a Tableau "keep only" OR-filter of
    # 3,000 agents, 1+1+...+1): once a stack overflow that aborted the server for everyone.
    ors = " OR ".join(f"agent_id = 'agent-{i:05}'" for i in range(3000))
    plus = "+".join(["1"] * 2000)
    results = during([lambda: run(f"SELECT count(*) FROM fact_interactions WHERE {ors}"), lambda: run(f"SELECT {plus}")])
    for r in results:
        print(f"deep: {r[0]:.2f} s, {r[1]}")
elif ATTACK == "filter":
    # A 10,000-value filter, answered (an IN list with a hash set), and a 3.8 MB IN list,
    # refused before planning (max_sql_bytes).
    ors = " OR ".join(f"event_id = 'e-{i:06}'" for i in range(10000))
    huge = "SELECT 1 WHERE 'a' IN (" + ",".join(f"'{i:06}'" for i in range(420000)) + ")"
    for r in during([lambda: run(f"SELECT count(*) FROM fact_interactions WHERE {ors}")]):
        print(f"10,000-value filter: {r[0]:.2f} s, {r[1]}")
    for r in during([lambda: run(huge)] * 4):
        print(f"3.8 MB IN list: {r[0]:.2f} s, {r[1]}")
elif ATTACK == "plans":
    # 300 distinct statements of ~60 KB each, sent by 20 signed-in clients (15 each, so that
    # the figure is planning's, not 300 password checks'): the plan cache is bounded by bytes.
    def client(k):
        def work():
            outcomes = {}
            with connect() as conn:
                for i in range(k, 300, 20):
                    sql = f"SELECT {i} AS n WHERE 'a' IN (" + ",".join(f"'{j:06}'" for j in range(6500)) + ")"
                    try:
                        with conn.cursor() as cur:
                            cur.execute(sql)
                            cur.fetch_arrow_table()
                        outcome = "ok"
                    except Exception as e:
                        outcome = "busy" if "too many concurrent" in str(e) else str(e).splitlines()[0][:60]
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
            return outcomes
        return work
    totals = {}
    for outcomes in during([client(k) for k in range(20)]):
        for key, n in outcomes.items():
            totals[key] = totals.get(key, 0) + n
    print(f"300 statements: {totals}")
else:
    sys.exit(f"unknown attack {ATTACK}")
print(f"server peak memory: {peak_rss_mb()} MB")
