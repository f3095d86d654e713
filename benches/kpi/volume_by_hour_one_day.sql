SELECT date_trunc('hour', event_timestamp) AS hour, queue_name, count(*) AS events
FROM fact_interactions
WHERE event_date = DATE '2024-03-06' AND state = 'started'
GROUP BY 1, 2
ORDER BY 1, 2
