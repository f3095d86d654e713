-- One row per queue name, media type and UTC day, as Genesys's own queue reports split
-- them (an e-mail answered in hours must not be judged against a call's 20 s): the sums of
-- queue_interval_metrics' counts over the day's intervals (each metric counts on the day of
-- its emitDate: an e-mail offered before midnight and answered after counts as offered on
-- one day and answered on the next), with the same ratios: AHT, ASA, service level
-- (answered within the target / (answered + abandoned)) against the media's target in
-- seconds, and abandon rate (abandoned / offered). Offered is not answered + abandoned:
-- flow-outs leave the queue too.
SELECT
  queue_name,
  media_type,
  date,
  n_offered,
  n_answered,
  n_abandoned,
  n_handled,
  n_transferred,
  t_handle_ms,
  t_answered_ms,
  service_level_target_seconds,
  CAST(t_handle_ms AS DOUBLE) / 1000.0 / nullif(n_handled, 0) AS aht_seconds,
  CAST(t_answered_ms AS DOUBLE) / 1000.0 / nullif(n_answered, 0) AS asa_seconds,
  CAST(n_answered_in_target AS DOUBLE) / nullif(n_answered + n_abandoned, 0) AS service_level,
  CAST(n_abandoned AS DOUBLE) / nullif(n_offered, 0) AS abandon_rate
FROM (
  SELECT
    queue_name,
    media_type,
    CAST(interval_start AS DATE) AS date,
    sum(n_offered) AS n_offered,
    sum(n_answered) AS n_answered,
    sum(n_answered_in_target) AS n_answered_in_target,
    sum(n_abandoned) AS n_abandoned,
    sum(n_handled) AS n_handled,
    sum(n_transferred) AS n_transferred,
    sum(t_handle_ms) AS t_handle_ms,
    sum(t_answered_ms) AS t_answered_ms,
    max(service_level_target_seconds) AS service_level_target_seconds
  FROM queue_interval_metrics
  GROUP BY queue_name, media_type, CAST(interval_start AS DATE)
) daily
