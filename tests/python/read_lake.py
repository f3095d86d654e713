"""Reads a cclake lake without cclake: the `deltalake` package and DuckDB's delta extension.

Prints one JSON object: for each reader, the rows of fact_interactions (a fixed set of
columns, sorted by event_id) and a digest of every other table named in the second argument
(JSON: table -> [[column, kind], ...]): the row count, then per column its non-null count
and, by kind, distinct count, extremes, sums and total text length, computed by DuckDB SQL
over what the reader read. The Rust test computes the same with `cclake query`.
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


def digest_sql(source, kinds):
    exprs = ["count(*)"]
    for name, kind in kinds:
        c = '"' + name + '"'
        exprs.append(f"count({c})")
        if kind == "text":
            exprs += [f"count(DISTINCT {c})", f"min({c})", f"max({c})", f"sum(length({c}))"]
        elif kind == "int":
            exprs += [f"count(DISTINCT {c})", f"min({c})", f"max({c})", f"sum(CAST({c} AS DOUBLE))"]
        elif kind == "float":
            exprs += [f"min({c})", f"max({c})", f"sum({c})"]
        elif kind == "bool":
            exprs.append(f"sum(CASE WHEN {c} THEN 1 ELSE 0 END)")
        elif kind == "date":
            exprs += [f"count(DISTINCT {c})", f"min(CAST({c} AS VARCHAR))", f"max(CAST({c} AS VARCHAR))"]
        elif kind == "timestamp":
            exprs += [f"count(DISTINCT {c})", f"min(epoch_us({c}))", f"max(epoch_us({c}))"]
    return f"SELECT {', '.join(exprs)} FROM {source}"


def plain(value):
    # DuckDB sums integers as HUGEINT and may hand back Decimal: JSON numbers either way.
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def with_deltalake(lake, tables):
    table = deltalake.DeltaTable(os.path.join(lake, "fact_interactions"))
    rows = table.to_pyarrow_table(columns=COLUMNS).to_pylist()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    digests = {}
    for name, kinds in tables.items():
        read = deltalake.DeltaTable(os.path.join(lake, name)).to_pyarrow_table()
        con.register("t", read)
        digests[name] = [plain(v) for v in con.execute(digest_sql("t", kinds)).fetchone()]
        con.unregister("t")
    return sorted((normalise(r) for r in rows), key=lambda r: r["event_id"]), digests


def with_duckdb(lake, tables):
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
    digests = {}
    for name, kinds in tables.items():
        source = "delta_scan('" + os.path.join(lake, name).replace("'", "''") + "')"
        digests[name] = [plain(v) for v in con.execute(digest_sql(source, kinds)).fetchone()]
    return rows, digests


if __name__ == "__main__":
    lake = sys.argv[1]
    # Without a table list: every other table of the lake, by its row count.
    tables = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {
        name: [] for name in sorted(os.listdir(lake))
        if name != "fact_interactions" and os.path.isdir(os.path.join(lake, name, "_delta_log"))}
    dl_rows, dl_digests = with_deltalake(lake, tables)
    dd_rows, dd_digests = with_duckdb(lake, tables)
    print(json.dumps({"deltalake": {"rows": dl_rows, "digests": dl_digests},
                      "duckdb": {"rows": dd_rows, "digests": dd_digests}}))
