-- A calendar covering every date of the lake: day of week (ISO, Monday = 1), ISO week,
-- month, quarter, year.
SELECT
  CAST(day AS DATE) AS date,
  CAST(date_part('isodow', day) AS INT) AS day_of_week,
  to_char(day, '%A') AS day_name,
  CAST(to_char(day, '%V') AS INT) AS iso_week,
  CAST(date_part('month', day) AS INT) AS month,
  CAST(date_part('quarter', day) AS INT) AS quarter,
  CAST(date_part('year', day) AS INT) AS year
FROM (
  SELECT unnest(generate_series(CAST(lo AS TIMESTAMP), CAST(hi AS TIMESTAMP), INTERVAL '1 day')) AS day
  FROM (SELECT min(event_date) AS lo, max(event_date) AS hi FROM fact_interactions)
  WHERE lo IS NOT NULL
)
