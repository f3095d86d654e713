"""The part of DuckDB's details ingest both formulations share (duckdb_details.py,
duckdb_details_lean.py): from a `latest` relation of conversations `c`, one row per metric of
each session, with the ids and the session's first queue."""

UNNEST_METRICS = """
  participants AS (SELECT c.conversationId AS conversation_id, unnest(c.participants) AS p FROM latest),
  sessions AS (SELECT conversation_id, p.participantId AS participant_id, p.purpose, p.userId AS user_id,
                      unnest(p.sessions) AS s FROM participants),
  metrics AS (SELECT conversation_id, participant_id, purpose, user_id, s.sessionId AS session_id,
                     s.mediaType AS media_type, s.segments[1].queueId AS queue_id, unnest(s.metrics) AS m FROM sessions)
"""
