-- Queues seen in the lake, with when they were first and last used.
SELECT
  queue_name,
  min(event_date) AS first_seen,
  max(event_date) AS last_seen,
  count(DISTINCT interaction_id) AS interactions
FROM fact_interactions
WHERE queue_name IS NOT NULL
GROUP BY queue_name
