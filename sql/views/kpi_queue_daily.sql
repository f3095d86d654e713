-- Per queue and day (the interaction's first event): offered, completed, abandoned,
-- abandon rate, and average handle time (AHT) in seconds over completed interactions.
SELECT
  interaction_date AS date,
  queue_name,
  count(*) AS offered,
  count(*) FILTER (WHERE final_state = 'completed') AS completed,
  count(*) FILTER (WHERE final_state = 'abandoned') AS abandoned,
  CAST(count(*) FILTER (WHERE final_state = 'abandoned') AS DOUBLE) / count(*) AS abandon_rate,
  avg(handle_seconds) FILTER (WHERE final_state = 'completed') AS aht_seconds
FROM interactions
GROUP BY interaction_date, queue_name
