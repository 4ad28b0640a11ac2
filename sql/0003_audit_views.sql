-- Views SREs query (see README, "Audit trail"). Times are timestamptz; latencies milliseconds.

-- Per hour, tenant and event: how many, how many distinct callers, and median / p95 latency.
-- Filter on occurred_at-derived `hour` for a window, e.g. WHERE hour >= now() - interval '1 day'.
CREATE OR REPLACE VIEW audit_hourly AS
SELECT date_trunc('hour', occurred_at)                              AS hour,
       tenant_id,
       event,
       count(*)                                                     AS events,
       count(DISTINCT subject)                                      AS subjects,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)      AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)     AS p95_ms
FROM audit_events
GROUP BY 1, 2, 3;

-- Refusals of the last 24 hours, newest first: who was turned away, for which tenant, from where.
CREATE OR REPLACE VIEW audit_denials_recent AS
SELECT occurred_at,
       event,
       status,
       subject,
       tenant_id,
       client_ip,
       detail ->> 'reason' AS reason,
       request_id
FROM audit_events
WHERE event IN ('auth_failed', 'access_denied', 'rate_limited')
  AND occurred_at > now() - interval '24 hours'
ORDER BY occurred_at DESC;

-- Tenants minting unusually many tokens: token_issued in the last hour above 3x their average
-- per hour over the 7 days before that hour (the hour itself is left out so a burst does not
-- raise its own baseline), and at least 20. A tenant with no history has an average of 0.
CREATE OR REPLACE VIEW audit_unusual_issuance AS
WITH last_hour AS (
    SELECT tenant_id, count(*) AS issued
    FROM audit_events
    WHERE event = 'token_issued'
      AND tenant_id IS NOT NULL
      AND occurred_at > now() - interval '1 hour'
    GROUP BY tenant_id
), baseline AS (
    SELECT tenant_id, count(*) / 168.0 AS hourly_avg
    FROM audit_events
    WHERE event = 'token_issued'
      AND tenant_id IS NOT NULL
      AND occurred_at > now() - interval '7 days 1 hour'
      AND occurred_at <= now() - interval '1 hour'
    GROUP BY tenant_id
)
SELECT l.tenant_id,
       l.issued                                           AS issued_last_hour,
       round(coalesce(b.hourly_avg, 0), 2)                AS hourly_avg_7d,
       round(l.issued / nullif(b.hourly_avg, 0), 1)       AS ratio
FROM last_hour l
LEFT JOIN baseline b USING (tenant_id)
WHERE l.issued >= 20
  AND l.issued > 3 * coalesce(b.hourly_avg, 0)
ORDER BY l.issued DESC;
