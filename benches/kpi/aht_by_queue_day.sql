SELECT event_date, queue_name, avg(duration_seconds) AS aht_seconds, count(*) AS handled
FROM fact_interactions
WHERE state = 'completed'
GROUP BY event_date, queue_name
ORDER BY event_date, queue_name
