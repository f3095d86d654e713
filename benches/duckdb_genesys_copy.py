"""DuckDB's own copy of a cclake lake's Genesys tables for benches/kpi_bench.py: each table's
live files (the Delta log's, through the `deltalake` package) rewritten by DuckDB as Parquet,
partitioned like the lake (conversation tables by conversation_date).

usage: duckdb_genesys_copy.py LAKE OUT"""
import os
import sys

import duckdb
from deltalake import DeltaTable

lake, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
for table, partition in [("session_metrics", "conversation_date"), ("participant_sessions", "conversation_date"),
                         ("queues", None), ("users", None)]:
    files = DeltaTable(os.path.join(lake, table)).file_uris()
    target = os.path.join(out, table)
    os.makedirs(target, exist_ok=True)
    source = f"read_parquet({files!r}, hive_partitioning = true)"
    if partition:
        con.execute(f"COPY (SELECT * FROM {source}) TO '{target}' (FORMAT parquet, PARTITION_BY ({partition}), OVERWRITE_OR_IGNORE)")
    else:
        con.execute(f"COPY (SELECT * FROM {source}) TO '{target}/data.parquet' (FORMAT parquet)")
    print(f"{table}: {con.execute(f'SELECT count(*) FROM {source}').fetchone()[0]} rows")
