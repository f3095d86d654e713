-- Per queue and hour (UTC) of the interaction's first event: volume.
SELECT
  date_trunc('hour', first_event_at) AS hour,
  queue_name,
  count(*) AS interactions
FROM interactions
GROUP BY date_trunc('hour', first_event_at), queue_name
