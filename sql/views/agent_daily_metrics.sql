-- Per agent and UTC day (of each metric's emitDate): handled (count of tHandle), talk, held
-- and after-call work (tTalkComplete, tHeldComplete, tAcw), AHT, answered, and alerts not
-- responded to (tNotResponding). Names come from the users export, else the user id.
-- The metrics are aggregated first and the names joined to the daily rows (one name per
-- user id): joining the users to every metric row cost cclake 40% of this view's time.
SELECT
  daily.user_id,
  coalesce(u.user_name, daily.user_id) AS user_name,
  date,
  n_handled,
  n_answered,
  t_talk_ms,
  t_held_ms,
  t_acw_ms,
  t_handle_ms,
  CAST(t_handle_ms AS DOUBLE) / 1000.0 / nullif(n_handled, 0) AS aht_seconds,
  n_not_responding,
  t_not_responding_ms
FROM (
  SELECT
    m.user_id,
    CAST(m.emit_date AS DATE) AS date,
    count(*) FILTER (WHERE m.name = 'tHandle') AS n_handled,
    count(*) FILTER (WHERE m.name = 'tAnswered') AS n_answered,
    coalesce(sum(m.value) FILTER (WHERE m.name = 'tTalkComplete'), 0) AS t_talk_ms,
    coalesce(sum(m.value) FILTER (WHERE m.name = 'tHeldComplete'), 0) AS t_held_ms,
    coalesce(sum(m.value) FILTER (WHERE m.name = 'tAcw'), 0) AS t_acw_ms,
    coalesce(sum(m.value) FILTER (WHERE m.name = 'tHandle'), 0) AS t_handle_ms,
    count(*) FILTER (WHERE m.name = 'tNotResponding') AS n_not_responding,
    coalesce(sum(m.value) FILTER (WHERE m.name = 'tNotResponding'), 0) AS t_not_responding_ms
  FROM session_metrics m
  WHERE m.user_id IS NOT NULL
  GROUP BY m.user_id, CAST(m.emit_date AS DATE)
) daily
LEFT JOIN (SELECT user_id, max(user_name) AS user_name FROM users GROUP BY user_id) u ON u.user_id = daily.user_id
