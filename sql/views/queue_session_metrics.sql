-- Every metric of a session in a queue, with what Genesys buckets it by: its emitDate (not
-- the conversation's start), as a UTC day and a 30-minute UTC interval; and the queue's
-- service-level target for the session's media: `mediaSettings.<media>.serviceLevel.durationMs`
-- from the queues export (`call` for voice), else the media's default (change them here):
-- 20 s for voice and callbacks, 30 s for chat, 1 hour for messages, 24 hours for e-mail.
SELECT
  m.conversation_id,
  m.session_id,
  m.purpose,
  m.user_id,
  m.queue_id,
  n.queue_name,
  m.media_type,
  m.name,
  m.value,
  m.emit_date,
  CAST(m.emit_date AS DATE) AS emit_day,
  date_bin(INTERVAL '30 minutes', m.emit_date, TIMESTAMP '2000-01-01T00:00:00Z') AS interval_start,
  coalesce(
    CASE m.media_type
      WHEN 'voice' THEN q.service_level_call_ms
      WHEN 'callback' THEN q.service_level_callback_ms
      WHEN 'chat' THEN q.service_level_chat_ms
      WHEN 'email' THEN q.service_level_email_ms
      WHEN 'message' THEN q.service_level_message_ms
    END,
    CASE m.media_type
      WHEN 'chat' THEN 30000
      WHEN 'message' THEN 3600000
      WHEN 'email' THEN 86400000
      ELSE 20000
    END
  ) AS service_level_target_ms
FROM session_metrics m
JOIN queue_names n ON n.queue_id = m.queue_id
LEFT JOIN queues q ON q.queue_id = m.queue_id
