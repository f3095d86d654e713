SELECT * FROM agent_daily_metrics ORDER BY user_id, date
