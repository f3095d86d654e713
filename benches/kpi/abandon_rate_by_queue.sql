SELECT queue_name,
       count(*) FILTER (WHERE state = 'abandoned') AS abandoned,
       count(DISTINCT interaction_id) AS offered,
       CAST(count(*) FILTER (WHERE state = 'abandoned') AS DOUBLE) / count(DISTINCT interaction_id) AS abandon_rate
FROM fact_interactions
GROUP BY queue_name
ORDER BY queue_name
