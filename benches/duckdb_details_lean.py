"""DuckDB's lean side of benches/details_vs_duckdb.sh: what benches/duckdb_details.py does
(each conversation's latest version, unnested to one row per metric, Parquet partitioned by
the metric's UTC emit date), written as a DuckDB user who knows the export's shape would:
the nested columns spelt out (only the fields the metrics need, so nothing is inferred and
nothing else is kept), each page read as one JSON object, the gzipped NDJSON as NDJSON, and
`QUALIFY` for the latest version. Prints the wall time in seconds and the metric rows
written."""
import sys
import time

import duckdb

from duckdb_details_sql import UNNEST_METRICS

details, out = sys.argv[1], sys.argv[2]

METRIC = "STRUCT(name VARCHAR, \"value\" BIGINT, emitDate TIMESTAMPTZ)"
SESSION = f"STRUCT(sessionId VARCHAR, mediaType VARCHAR, segments STRUCT(queueId VARCHAR)[], metrics {METRIC}[])"
PARTICIPANT = f"STRUCT(participantId VARCHAR, purpose VARCHAR, userId VARCHAR, sessions {SESSION}[])"
CONVERSATION = (
    f"STRUCT(conversationId VARCHAR, conversationStart TIMESTAMPTZ, conversationEnd TIMESTAMPTZ, participants {PARTICIPANT}[])"
)
CONVERSATION_COLUMNS = (
    "{conversationId: 'VARCHAR', conversationStart: 'TIMESTAMPTZ', conversationEnd: 'TIMESTAMPTZ', "
    f"participants: '{PARTICIPANT}[]'}}"
)

con = duckdb.connect()
start = time.perf_counter()
con.execute(f"""
COPY (
  WITH conversations AS (
    SELECT unnest(conversations) AS c
    FROM read_json('{details}/**/*.json', format = 'unstructured', records = true,
                   columns = {{conversations: '{CONVERSATION}[]'}}, maximum_object_size = 1073741824)
    UNION ALL
    SELECT struct_pack(conversationId, conversationStart, conversationEnd, participants) AS c
    FROM read_json('{details}/**/*.jsonl.gz', format = 'newline_delimited', records = true,
                   columns = {CONVERSATION_COLUMNS}, maximum_object_size = 1073741824)
  ),
  latest AS (
    SELECT c FROM conversations
    QUALIFY row_number() OVER (PARTITION BY c.conversationId ORDER BY (c.conversationEnd IS NOT NULL) DESC) = 1
  ),
{UNNEST_METRICS}  SELECT conversation_id, participant_id, session_id, purpose, user_id, queue_id, media_type,
         m.name AS name, m.value AS value, m.emitDate AS emit_date,
         CAST(m.emitDate AT TIME ZONE 'UTC' AS DATE) AS emit_day
  FROM metrics
) TO '{out}' (FORMAT parquet, PARTITION_BY (emit_day))
""")
elapsed = time.perf_counter() - start
rows = con.sql(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchall()[0][0]
print(f"{elapsed:.3f} {rows}")
