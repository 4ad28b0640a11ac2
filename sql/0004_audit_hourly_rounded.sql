-- audit_hourly's percentiles rounded to 0.01 ms: interpolation gave 74.10014999999999 where a
-- reader wants 74.1. Still double precision, so the view is replaced in place.
CREATE OR REPLACE VIEW audit_hourly AS
SELECT date_trunc('hour', occurred_at)                                         AS hour,
       tenant_id,
       event,
       count(*)                                                                AS events,
       count(DISTINCT subject)                                                 AS subjects,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms))::numeric, 2)::float8
                                                                               AS p50_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms))::numeric, 2)::float8
                                                                               AS p95_ms
FROM audit_events
GROUP BY 1, 2, 3;
