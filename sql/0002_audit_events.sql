-- One row per request to the token endpoint. The token itself is never stored: token_sha256 is.
CREATE TABLE IF NOT EXISTS audit_events (
    event_id     uuid        NOT NULL PRIMARY KEY,  -- time-ordered (UUIDv7), set when the event is made
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
    detail       jsonb                   -- reason and error code for rejections
);

-- "What happened around 14:05?" scans by time; BRIN stays tiny on an append-only table.
CREATE INDEX IF NOT EXISTS audit_events_occurred_brin ON audit_events USING brin (occurred_at);
CREATE INDEX IF NOT EXISTS audit_events_tenant_time ON audit_events (tenant_id, occurred_at DESC);
CREATE INDEX IF NOT EXISTS audit_events_subject_time ON audit_events (subject, occurred_at DESC);
CREATE INDEX IF NOT EXISTS audit_events_event_time ON audit_events (event, occurred_at DESC);
CREATE INDEX IF NOT EXISTS audit_events_request_id ON audit_events (request_id);
