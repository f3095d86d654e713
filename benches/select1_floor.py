"""Where a Flight SQL `SELECT 1` round trip goes: N queries over one ADBC cursor, the wall
time per query, the client's CPU per query (this process: Python and the ADBC Go driver's
threads) and the server's CPU per query (from /proc/PID/stat of the server, utime + stime).
What is left of the wall time is waiting: the loopback network stack, thread wake-ups and
the two RPCs' (GetFlightInfo, DoGet) scheduling on both sides.

usage: select1_floor.py GRPC_URL USER PASSWORD SERVER_PID [N]"""
import os
import sys
import time

import adbc_driver_flightsql.dbapi as flightsql

url, user, password, pid = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 2000
ticks = os.sysconf("SC_CLK_TCK")


def server_cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks


conn = flightsql.connect(url, db_kwargs={"username": user, "password": password}, autocommit=True)
cur = conn.cursor()
for _ in range(200):  # warm-up
    cur.execute("SELECT 1")
    cur.fetch_arrow_table()
server_before, client_before, start = server_cpu(), time.process_time(), time.perf_counter()
for _ in range(n):
    cur.execute("SELECT 1")
    cur.fetch_arrow_table()
wall = (time.perf_counter() - start) / n * 1000
client = (time.process_time() - client_before) / n * 1000
server = (server_cpu() - server_before) / n * 1000
print(f"SELECT 1 over Flight SQL, {n} queries on one ADBC cursor: {wall:.2f} ms a query; "
      f"client CPU {client:.2f} ms, server CPU {server:.2f} ms, waiting {max(wall - client - server, 0):.2f} ms")
cur.close()
conn.close()
