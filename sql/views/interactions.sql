-- One row per interaction. The final state, queue and agent come from the latest event by
-- event time (not by arrival), so out-of-order deliveries and interactions that straddle
-- midnight give the right answer.
SELECT
  interaction_id,
  min(event_timestamp) AS first_event_at,
  max(event_timestamp) AS last_event_at,
  CAST(min(event_timestamp) AS DATE) AS interaction_date,
  first_value(interaction_type ORDER BY event_timestamp, event_id) AS interaction_type,
  first_value(direction ORDER BY event_timestamp, event_id) AS direction,
  last_value(state ORDER BY event_timestamp, event_id) AS final_state,
  last_value(queue_name ORDER BY event_timestamp, event_id) AS queue_name,
  max(agent_id) AS agent_id,
  max(CASE WHEN state = 'completed' THEN duration_seconds END) AS handle_seconds,
  max(CASE WHEN state = 'abandoned' THEN duration_seconds END) AS wait_seconds,
  count(*) AS events
FROM fact_interactions
GROUP BY interaction_id
