"""DuckDB's side of benches/ingest_vs_duckdb.sh: the same exports, deduplicated by event_id
(latest delivery wins) and written as Parquet partitioned by event_date and queue_name.
Prints the wall time in seconds."""
import sys
import time

import duckdb

exports, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
start = time.perf_counter()
con.execute(f"""
COPY (
  SELECT * EXCLUDE (rn) FROM (
    SELECT event_id, interaction_id, CAST("timestamp" AS TIMESTAMPTZ) AS event_timestamp,
           "type" AS interaction_type, direction, state, CAST(duration_seconds AS BIGINT) AS duration_seconds,
           queue_name, agent_id, caller_number_masked, metadata.campaign_id AS campaign_id,
           CAST(CAST("timestamp" AS TIMESTAMPTZ) AS DATE) AS event_date,
           row_number() OVER (PARTITION BY event_id ORDER BY filename DESC) AS rn
    FROM read_json(['{exports}/**/*.jsonl', '{exports}/**/*.json', '{exports}/**/*.jsonl.gz'],
                   format = 'auto', union_by_name = true, filename = true)
  ) WHERE rn = 1 AND event_id IS NOT NULL  -- _manifest.json is not an export
) TO '{out}' (FORMAT parquet, PARTITION_BY (event_date, queue_name))
""")
print(f"{time.perf_counter() - start:.3f}")
