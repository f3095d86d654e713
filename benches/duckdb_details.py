"""DuckDB's side of benches/details_vs_duckdb.sh: the same Genesys conversation-detail
exports (pages of `conversations[]` and gzipped NDJSON of one conversation a line), each
conversation's latest version kept (the one with a conversationEnd, as DuckDB cannot see
delivery times), unnested to one row per metric and written as Parquet partitioned by the
metric's UTC emit date. Prints the wall time in seconds."""
import sys
import time

import duckdb

from duckdb_details_sql import UNNEST_METRICS

details, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
start = time.perf_counter()
con.execute(f"""
CREATE TEMP TABLE conversations AS
  SELECT unnest(conversations) AS c
  FROM read_json('{details}/**/*.json', format = 'auto', maximum_object_size = 1073741824)
  UNION ALL
  SELECT struct_pack(conversationId, conversationStart, conversationEnd, participants) AS c
  FROM read_json('{details}/**/*.jsonl.gz', format = 'newline_delimited', maximum_object_size = 1073741824)
""")
con.execute(f"""
COPY (
  WITH latest AS (
    SELECT c FROM (
      SELECT c, row_number() OVER (PARTITION BY c.conversationId ORDER BY (c.conversationEnd IS NOT NULL) DESC) AS rn
      FROM conversations
    ) WHERE rn = 1
  ),
{UNNEST_METRICS}  SELECT conversation_id, participant_id, session_id, purpose, user_id, queue_id, media_type,
         m.name AS name, CAST(m.value AS BIGINT) AS value, CAST(m.emitDate AS TIMESTAMPTZ) AS emit_date,
         CAST(CAST(m.emitDate AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS DATE) AS emit_day
  FROM metrics
) TO '{out}' (FORMAT parquet, PARTITION_BY (emit_day))
""")
print(f"{time.perf_counter() - start:.3f}")
