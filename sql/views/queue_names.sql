-- Each queue id seen in conversation details or the queues export, with its name: from the
-- queues export (latest wins), else the name of that queue's `acd` participant (Genesys
-- names the acd participant after the queue), else the id itself.
SELECT
  ids.queue_id,
  coalesce(q.queue_name, acd.queue_name, ids.queue_id) AS queue_name
FROM (
  SELECT queue_id FROM participant_sessions WHERE queue_id IS NOT NULL
  UNION
  SELECT queue_id FROM queues
) ids
LEFT JOIN queues q ON q.queue_id = ids.queue_id
LEFT JOIN (
  SELECT queue_id, max(participant_name) AS queue_name
  FROM participant_sessions
  WHERE purpose = 'acd' AND queue_id IS NOT NULL
  GROUP BY queue_id
) acd ON acd.queue_id = ids.queue_id
