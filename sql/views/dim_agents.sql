-- Agents seen in the lake.
SELECT
  agent_id,
  min(event_date) AS first_seen,
  max(event_date) AS last_seen,
  count(DISTINCT interaction_id) AS interactions
FROM fact_interactions
WHERE agent_id IS NOT NULL
GROUP BY agent_id
