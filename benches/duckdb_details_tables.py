"""DuckDB writing what cclake's details ingest writes (benches/details_vs_duckdb.sh): the four
tables `conversations`, `participant_sessions`, `session_segments` and `session_metrics`, with
the same columns (the session's first queue, last disconnect type, first segment start and
last segment end; the conversation's division ids and sorted media types as comma-joined
text; flow types lower-cased, as cclake keeps enumerations), each partitioned by the
conversation's UTC date, from each conversation's latest version. Written as a DuckDB user who
knows the export's shape would: the nested columns spelt out, each page read as one JSON
object, the gzipped NDJSON as NDJSON, `QUALIFY` for the latest version, the latest
conversations and their sessions kept as temporary tables (in memory) so that the four
`COPY`s read the JSON once. No masking and no delivery columns: less work than cclake does.
Prints the wall time in seconds and the rows of each table, in the order above."""
import os
import sys
import time

import duckdb

details, out = sys.argv[1], sys.argv[2]

METRIC = "STRUCT(name VARCHAR, \"value\" BIGINT, emitDate TIMESTAMPTZ)"
SEGMENT = (
    "STRUCT(segmentType VARCHAR, segmentStart TIMESTAMPTZ, segmentEnd TIMESTAMPTZ, queueId VARCHAR, "
    "wrapUpCode VARCHAR, disconnectType VARCHAR, conference BOOLEAN, errorCode VARCHAR)"
)
FLOW = (
    "STRUCT(flowId VARCHAR, flowName VARCHAR, flowType VARCHAR, entryReason VARCHAR, exitReason VARCHAR, "
    "transferType VARCHAR)"
)
SESSION = (
    "STRUCT(sessionId VARCHAR, mediaType VARCHAR, direction VARCHAR, ani VARCHAR, dnis VARCHAR, "
    "sessionDnis VARCHAR, remote VARCHAR, remoteNameDisplayable VARCHAR, addressFrom VARCHAR, addressTo VARCHAR, "
    f"recording BOOLEAN, provider VARCHAR, flow {FLOW}, segments {SEGMENT}[], metrics {METRIC}[])"
)
PARTICIPANT = (
    "STRUCT(participantId VARCHAR, purpose VARCHAR, userId VARCHAR, participantName VARCHAR, "
    f"externalContactId VARCHAR, sessions {SESSION}[])"
)
FIELDS = {
    "conversationId": "VARCHAR",
    "conversationStart": "TIMESTAMPTZ",
    "conversationEnd": "TIMESTAMPTZ",
    "originatingDirection": "VARCHAR",
    "divisionIds": "VARCHAR[]",
    "mediaStatsMinConversationMos": "DOUBLE",
    "mediaStatsMinConversationRFactor": "DOUBLE",
    "externalTag": "VARCHAR",
    "participants": f"{PARTICIPANT}[]",
}
CONVERSATION = "STRUCT(" + ", ".join(f"{name} {kind}" for name, kind in FIELDS.items()) + ")"
COLUMNS = "{" + ", ".join(f"{name}: '{kind}'" for name, kind in FIELDS.items()) + "}"

os.makedirs(out, exist_ok=True)
con = duckdb.connect()
start = time.perf_counter()
con.execute(f"""
CREATE TEMP TABLE latest AS
  WITH conversations AS (
    SELECT unnest(conversations) AS c
    FROM read_json('{details}/**/*.json', format = 'unstructured', records = true,
                   columns = {{conversations: '{CONVERSATION}[]'}}, maximum_object_size = 1073741824)
    UNION ALL
    SELECT struct_pack({", ".join(FIELDS)}) AS c
    FROM read_json('{details}/**/*.jsonl.gz', format = 'newline_delimited', records = true,
                   columns = {COLUMNS}, maximum_object_size = 1073741824)
  )
  SELECT c, CAST(c.conversationStart AT TIME ZONE 'UTC' AS DATE) AS conversation_date FROM conversations
  QUALIFY row_number() OVER (PARTITION BY c.conversationId ORDER BY (c.conversationEnd IS NOT NULL) DESC) = 1
""")
con.execute("""
CREATE TEMP TABLE sessions AS
  SELECT conversation_id, conversation_start, conversation_date, p.participantId AS participant_id,
         p.purpose AS purpose, p.userId AS user_id, p.participantName AS participant_name,
         p.externalContactId AS external_contact_id, unnest(p.sessions) AS s
  FROM (SELECT c.conversationId AS conversation_id, c.conversationStart AS conversation_start, conversation_date,
               unnest(c.participants) AS p FROM latest)
""")
copy = "(FORMAT parquet, PARTITION_BY (conversation_date))"
con.execute(f"""
COPY (
  SELECT c.conversationId AS conversation_id, c.conversationStart AS conversation_start,
         c.conversationEnd AS conversation_end, c.originatingDirection AS originating_direction,
         nullif(array_to_string(c.divisionIds, ','), '') AS division_ids,
         nullif(array_to_string(list_sort(list_distinct(flatten(
           list_transform(c.participants, lambda p: list_transform(p.sessions, lambda s: s.mediaType))))), ','), '') AS media_types,
         c.mediaStatsMinConversationMos AS min_mos, c.mediaStatsMinConversationRFactor AS min_r_factor,
         c.externalTag AS external_tag, conversation_date
  FROM latest
) TO '{out}/conversations' {copy}
""")
con.execute(f"""
COPY (
  SELECT conversation_id, participant_id, s.sessionId AS session_id, participant_name, purpose, user_id,
         external_contact_id, s.mediaType AS media_type, s.direction AS direction, s.ani AS ani, s.dnis AS dnis,
         s.sessionDnis AS session_dnis, s.remote AS remote, s.remoteNameDisplayable AS remote_name_displayable,
         s.addressFrom AS address_from, s.addressTo AS address_to, s.recording AS recording, s.provider AS provider,
         list_filter(list_transform(s.segments, lambda g: g.queueId), lambda q: q IS NOT NULL)[1] AS queue_id,
         s.flow.flowId AS flow_id, s.flow.flowName AS flow_name, lower(s.flow.flowType) AS flow_type,
         s.flow.entryReason AS flow_entry_reason, s.flow.exitReason AS flow_exit_reason,
         s.flow.transferType AS flow_transfer_type,
         list_filter(list_transform(s.segments, lambda g: g.disconnectType), lambda d: d IS NOT NULL)[-1] AS disconnect_type,
         list_min(list_transform(s.segments, lambda g: g.segmentStart)) AS session_start,
         list_max(list_transform(s.segments, lambda g: g.segmentEnd)) AS session_end,
         conversation_start, conversation_date
  FROM sessions
) TO '{out}/participant_sessions' {copy}
""")
con.execute(f"""
COPY (
  SELECT conversation_id, participant_id, session_id, segment_index, purpose, user_id, media_type,
         g.segmentType AS segment_type, g.segmentStart AS segment_start, g.segmentEnd AS segment_end,
         g.queueId AS queue_id, g.wrapUpCode AS wrapup_code, g.disconnectType AS disconnect_type,
         g.conference AS conference, g.errorCode AS error_code, conversation_date
  FROM (SELECT conversation_id, participant_id, s.sessionId AS session_id, purpose, user_id, s.mediaType AS media_type,
               unnest(s.segments) AS g, unnest(range(len(s.segments))) AS segment_index, conversation_date
        FROM sessions)
) TO '{out}/session_segments' {copy}
""")
con.execute(f"""
COPY (
  SELECT conversation_id, participant_id, session_id, purpose, user_id, queue_id, media_type,
         m.name AS name, m.value AS value, m.emitDate AS emit_date, conversation_date
  FROM (SELECT conversation_id, participant_id, s.sessionId AS session_id, purpose, user_id,
               list_filter(list_transform(s.segments, lambda g: g.queueId), lambda q: q IS NOT NULL)[1] AS queue_id,
               s.mediaType AS media_type, unnest(s.metrics) AS m, conversation_date
        FROM sessions)
) TO '{out}/session_metrics' {copy}
""")
elapsed = time.perf_counter() - start
tables = ["conversations", "participant_sessions", "session_segments", "session_metrics"]
rows = [con.sql(f"SELECT count(*) FROM read_parquet('{out}/{t}/**/*.parquet')").fetchall()[0][0] for t in tables]
print(f"{elapsed:.3f} {' '.join(map(str, rows))}")
