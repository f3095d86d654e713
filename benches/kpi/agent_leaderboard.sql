SELECT agent_id, count(*) AS handled, avg(duration_seconds) AS aht_seconds
FROM fact_interactions
WHERE state = 'completed' AND agent_id IS NOT NULL
GROUP BY agent_id
ORDER BY handled DESC, agent_id
LIMIT 20
