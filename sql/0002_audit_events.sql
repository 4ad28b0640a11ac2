-- One row per request to the token endpoint. The token itself is never stored: token_sha256 is.
-- Range-partitioned by day (UTC) on occurred_at, so retention drops whole partitions instead of
-- deleting rows. The service (and `gateway audit maintain`) creates the day partitions ahead of
-- time; audit_events_default catches any row whose day has no partition yet, so a write never
-- fails for want of one, and maintenance moves such rows into their day when it creates it.
CREATE TABLE IF NOT EXISTS audit_events (
    event_id     uuid        NOT NULL,   -- time-ordered (UUIDv7), set when the event is made
    occurred_at  timestamptz NOT NULL,
    event        text        NOT NULL,   -- token_issued, token_reused, auth_failed, access_denied, ...
    status       smallint    NOT NULL,   -- the HTTP status answered
    request_id   text        NOT NULL,
    subject      text,                   -- the caller JWT's sub, when it verified
    tenant_id    text,
    workspace_id text,
    dashboard_id text,
    api_key_id   text,
    expires_at   timestamptz,
    token_sha256 text,
    cache_hit    boolean,
    client_ip    inet,
    user_agent   text,
    latency_ms   double precision,
    detail       jsonb,                  -- reason and error code for rejections
    -- A unique key on a partitioned table must hold the partition key. An event's id and its
    -- occurred_at are set together, once, so (event_id, occurred_at) is as unique as event_id and
    -- INSERT ... ON CONFLICT on it makes a retried batch harmless.
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE TABLE IF NOT EXISTS audit_events_default PARTITION OF audit_events DEFAULT;

-- Rows arrive in time order, so within a day partition occurred_at follows the physical order:
-- a BRIN index answers "what happened between 14:00 and 14:05" at a tiny fraction of a btree's size.
CREATE INDEX IF NOT EXISTS audit_events_occurred_brin ON audit_events USING brin (occurred_at);
-- tail --tenant, audit_unusual_issuance (per tenant, one event kind, a time window).
CREATE INDEX IF NOT EXISTS audit_events_tenant_time ON audit_events (tenant_id, occurred_at);
-- audit_denials_recent and tail --event: a few event kinds over the last hours.
CREATE INDEX IF NOT EXISTS audit_events_event_time ON audit_events (event, occurred_at);
-- No index on subject or request_id: each costs write throughput (see bench/audit_write.py) for
-- ad-hoc lookups that a time window plus BRIN answers well enough. Add them if you need them.
