"""Reads a cclake lake without cclake: the `deltalake` package and DuckDB's delta extension.

Prints one JSON object: for each reader, the rows of fact_interactions (a fixed set of
columns, sorted by event_id) and the row counts of every other table of the lake (each
folder holding a `_delta_log`). The Rust test compares them with `cclake query`.
"""
import json
import os
import sys

import deltalake
import duckdb
import duckdb_extension_delta

COLUMNS = ["event_id", "interaction_id", "queue_name", "event_date", "event_timestamp",
           "state", "duration_seconds", "caller_number_masked"]


def normalise(row):
    out = dict(row)
    out["event_date"] = str(out["event_date"])
    ts = out["event_timestamp"]
    out["event_timestamp"] = ts.strftime("%Y-%m-%dT%H:%M:%S.%f") if ts is not None else None
    return out


def other_tables(lake):
    return sorted(name for name in os.listdir(lake)
                  if name != "fact_interactions" and os.path.isdir(os.path.join(lake, name, "_delta_log")))


def with_deltalake(lake):
    table = deltalake.DeltaTable(os.path.join(lake, "fact_interactions"))
    rows = table.to_pyarrow_table(columns=COLUMNS).to_pylist()
    counts = {name: deltalake.DeltaTable(os.path.join(lake, name)).to_pyarrow_table().num_rows
              for name in other_tables(lake)}
    return sorted((normalise(r) for r in rows), key=lambda r: r["event_id"]), counts


def with_duckdb(lake):
    path = os.path.join(os.path.dirname(duckdb_extension_delta.__file__),
                        "extensions", "v" + duckdb.__version__, "delta.duckdb_extension")
    con = duckdb.connect(config={"allow_unsigned_extensions": True})
    con.execute(f"LOAD '{path}'")
    con.execute("SET TimeZone = 'UTC'")
    cols = ", ".join(COLUMNS)
    cur = con.execute(f"SELECT {cols} FROM delta_scan(?) ORDER BY event_id",
                      [os.path.join(lake, "fact_interactions")])
    names = [d[0] for d in cur.description]
    rows = [normalise(dict(zip(names, r))) for r in cur.fetchall()]
    counts = {name: con.execute("SELECT count(*) FROM delta_scan(?)", [os.path.join(lake, name)]).fetchone()[0]
              for name in other_tables(lake)}
    return rows, counts


if __name__ == "__main__":
    lake = sys.argv[1]
    dl_rows, dl_counts = with_deltalake(lake)
    dd_rows, dd_counts = with_duckdb(lake)
    print(json.dumps({"deltalake": {"rows": dl_rows, "counts": dl_counts},
                      "duckdb": {"rows": dd_rows, "counts": dd_counts}}))
