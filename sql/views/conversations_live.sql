-- Conversations known only from EventBridge events so far (no details export of them yet):
-- what a wallboard can show before the details job catches up. `queue_name` is the queue's
-- name as `queue_names` knows it (else its id).
SELECT
  l.conversation_id,
  l.first_event_time,
  l.last_event_time,
  l.last_event_type,
  l.queue_id,
  coalesce(n.queue_name, l.queue_id) AS queue_name,
  l.user_id,
  l.media_type,
  l.events
FROM (
  SELECT
    e.conversation_id,
    min(e.event_time) AS first_event_time,
    max(e.event_time) AS last_event_time,
    last_value(e.event_type ORDER BY e.event_time, e.event_id) AS last_event_type,
    last_value(e.queue_id ORDER BY e.event_time, e.event_id) FILTER (WHERE e.queue_id IS NOT NULL) AS queue_id,
    last_value(e.user_id ORDER BY e.event_time, e.event_id) FILTER (WHERE e.user_id IS NOT NULL) AS user_id,
    max(e.media_type) AS media_type,
    count(*) AS events
  FROM conversation_events e
  WHERE e.conversation_id IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.conversation_id = e.conversation_id)
  GROUP BY e.conversation_id
) l
LEFT JOIN queue_names n ON n.queue_id = l.queue_id
