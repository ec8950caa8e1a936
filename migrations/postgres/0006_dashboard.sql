-- Statistics, kept as outcomes and receipts are recorded (never by
-- scanning notification_messages): one row per minute, channel, provider,
-- event and code. Events: each provider call's outcome (sent, permanent,
-- retryable, rate_limited, unknown, reconciled, unauthorized), `failed`
-- when a message ends failed, `delivery:<status>` from receipts,
-- `webhook_rejected`. Latency is a histogram (the buckets of /metrics).
CREATE TABLE IF NOT EXISTS herald_stats (
    bucket TIMESTAMPTZ NOT NULL,
    channel TEXT NOT NULL,
    provider TEXT NOT NULL,
    event TEXT NOT NULL,
    code TEXT NOT NULL DEFAULT '',
    count BIGINT NOT NULL DEFAULT 0,
    segments BIGINT NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    lat BIGINT[] NOT NULL DEFAULT '{0,0,0,0,0,0,0,0,0,0,0,0,0}',
    PRIMARY KEY (bucket, channel, provider, event, code)
);

-- The same, per hour: ranges longer than a few hours read this (a 30-day
-- overview reads 720 hours, not 43,200 minutes).
CREATE TABLE IF NOT EXISTS herald_stats_hourly (
    bucket TIMESTAMPTZ NOT NULL,
    channel TEXT NOT NULL,
    provider TEXT NOT NULL,
    event TEXT NOT NULL,
    code TEXT NOT NULL DEFAULT '',
    count BIGINT NOT NULL DEFAULT 0,
    segments BIGINT NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    lat BIGINT[] NOT NULL DEFAULT '{0,0,0,0,0,0,0,0,0,0,0,0,0}',
    PRIMARY KEY (bucket, channel, provider, event, code)
);

-- Dashboard sessions: only a hash of the cookie's token is stored.
CREATE TABLE IF NOT EXISTS herald_sessions (
    token_hash TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Alert rules added in the dashboard or the API (rules from the
-- environment are not stored), each rule's state, and what happened.
CREATE TABLE IF NOT EXISTS herald_alert_rules (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS herald_alert_state (
    rule_id TEXT PRIMARY KEY,
    firing BOOLEAN NOT NULL,
    since TIMESTAMPTZ,
    last_change TIMESTAMPTZ NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS herald_alert_events (
    id BIGSERIAL PRIMARY KEY,
    rule_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    summary TEXT NOT NULL,
    detail TEXT NOT NULL,
    deliveries TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS herald_alert_events_at ON herald_alert_events (at);

-- Who evaluates alerts: one worker at a time, by lease.
CREATE TABLE IF NOT EXISTS herald_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- A customer's messages, newest first (the dashboard's and the API's
-- recipient filter; the support desk's first question).
CREATE INDEX IF NOT EXISTS notification_messages_recipient
    ON notification_messages ({{recipient}}, id);
