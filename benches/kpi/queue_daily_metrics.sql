SELECT * FROM queue_daily_metrics ORDER BY queue_name, date
