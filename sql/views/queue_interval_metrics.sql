-- Per queue, media type and 30-minute UTC interval (of each metric's emitDate), Genesys's
-- definitions (GENESYS.md, KPIs): offered = sum(nOffered); answered, abandoned, handled =
-- count of tAnswered, tAbandon, tHandle (every agent session that has one, a forced wrap-up
-- after a missed alert too); answered within the queue's service-level target for the
-- media; AHT = sum(tHandle) / count(tHandle); ASA = sum(tAnswered) / count(tAnswered);
-- service level = answered within the target / (answered + abandoned); abandon rate =
-- abandoned / offered; the target (seconds) it was measured against. Every count is
-- additive: queue_daily_metrics sums these rows.
SELECT
  queue_name,
  media_type,
  interval_start,
  n_offered,
  n_answered,
  n_answered_in_target,
  n_abandoned,
  n_handled,
  n_transferred,
  t_handle_ms,
  t_answered_ms,
  service_level_target_ms / 1000 AS service_level_target_seconds,
  CAST(t_handle_ms AS DOUBLE) / 1000.0 / nullif(n_handled, 0) AS aht_seconds,
  CAST(t_answered_ms AS DOUBLE) / 1000.0 / nullif(n_answered, 0) AS asa_seconds,
  CAST(n_answered_in_target AS DOUBLE) / nullif(n_answered + n_abandoned, 0) AS service_level,
  CAST(n_abandoned AS DOUBLE) / nullif(n_offered, 0) AS abandon_rate
FROM (
  SELECT
    queue_name,
    media_type,
    interval_start,
    coalesce(sum(value) FILTER (WHERE name = 'nOffered'), 0) AS n_offered,
    count(*) FILTER (WHERE name = 'tAnswered') AS n_answered,
    count(*) FILTER (WHERE name = 'tAnswered' AND value <= service_level_target_ms) AS n_answered_in_target,
    count(*) FILTER (WHERE name = 'tAbandon') AS n_abandoned,
    count(*) FILTER (WHERE name = 'tHandle') AS n_handled,
    coalesce(sum(value) FILTER (WHERE name = 'nTransferred'), 0) AS n_transferred,
    coalesce(sum(value) FILTER (WHERE name = 'tHandle'), 0) AS t_handle_ms,
    coalesce(sum(value) FILTER (WHERE name = 'tAnswered'), 0) AS t_answered_ms,
    max(service_level_target_ms) AS service_level_target_ms
  FROM queue_session_metrics
  GROUP BY queue_name, media_type, interval_start
) intervals
