"""The lean DuckDB formulation of benches/ingest_vs_duckdb.sh, as a DuckDB user writes it:
`read_json` told the columns (no type inference), NDJSON read as NDJSON and JSON arrays as
arrays, casts in the SELECT, the latest delivery of each event_id kept with QUALIFY, and
`COPY ... PARTITION_BY (event_date, queue_name)`. Prints the wall time in seconds and the
rows written (a check that both engines kept the same events).

usage: duckdb_ingest_lean.py EXPORTS OUT"""
import glob
import os
import sys
import time

import duckdb

exports, out = sys.argv[1], sys.argv[2]
columns = """{event_id: 'VARCHAR', "timestamp": 'VARCHAR', interaction_id: 'VARCHAR', "type": 'VARCHAR',
  direction: 'VARCHAR', state: 'VARCHAR', duration_seconds: 'VARCHAR', queue_name: 'VARCHAR',
  agent_id: 'VARCHAR', caller_number_masked: 'VARCHAR', recording_url: 'VARCHAR',
  metadata: 'STRUCT(source_ip VARCHAR, campaign_id VARCHAR)'}"""


def files(suffix):
    """The export files with this suffix (not `_manifest.json` and the like, as cclake skips them)."""
    paths = glob.glob(f"{exports}/**/*{suffix}", recursive=True)
    return sorted(p for p in paths if not os.path.basename(p).startswith("_"))


start = time.perf_counter()
ndjson, arrays = files(".jsonl") + files(".jsonl.gz"), files(".json")
sources = []
if ndjson:
    sources.append(f"SELECT * FROM read_json({ndjson}, format = 'newline_delimited', filename = true, columns = {columns})")
if arrays:
    sources.append(f"SELECT * FROM read_json({arrays}, format = 'array', filename = true, columns = {columns})")
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(f"""
COPY (
  SELECT event_id, interaction_id, CAST("timestamp" AS TIMESTAMPTZ) AS event_timestamp,
         "type" AS interaction_type, direction, state, CAST(duration_seconds AS BIGINT) AS duration_seconds,
         queue_name, agent_id, caller_number_masked, metadata.campaign_id AS campaign_id,
         CAST(CAST("timestamp" AS TIMESTAMPTZ) AS DATE) AS event_date
  FROM ({' UNION ALL '.join(sources)})
  WHERE event_id IS NOT NULL
  QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY filename DESC) = 1
) TO '{out}' (FORMAT parquet, PARTITION_BY (event_date, queue_name))
""")
elapsed = time.perf_counter() - start
rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchone()[0]
print(f"{elapsed:.3f} {rows}")
