-- Per agent and day: interactions handled (completed) and their AHT in seconds.
SELECT
  interaction_date AS date,
  agent_id,
  count(*) FILTER (WHERE final_state = 'completed') AS handled,
  avg(handle_seconds) FILTER (WHERE final_state = 'completed') AS aht_seconds
FROM interactions
WHERE agent_id IS NOT NULL
GROUP BY interaction_date, agent_id
