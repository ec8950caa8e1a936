-- Statistics, kept as outcomes and receipts are recorded (never by
-- scanning notification_messages): one row per minute, channel, provider,
-- event and code. The latency histogram (the buckets of /metrics) is one
-- column per bucket.
CREATE TABLE IF NOT EXISTS herald_stats (
    bucket DATETIME(6) NOT NULL,
    channel VARCHAR(32) NOT NULL,
    provider VARCHAR(64) NOT NULL,
    event VARCHAR(128) NOT NULL,
    code VARCHAR(128) NOT NULL DEFAULT '',
    count BIGINT NOT NULL DEFAULT 0,
    segments BIGINT NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    lat0 BIGINT NOT NULL DEFAULT 0, lat1 BIGINT NOT NULL DEFAULT 0, lat2 BIGINT NOT NULL DEFAULT 0,
    lat3 BIGINT NOT NULL DEFAULT 0, lat4 BIGINT NOT NULL DEFAULT 0, lat5 BIGINT NOT NULL DEFAULT 0,
    lat6 BIGINT NOT NULL DEFAULT 0, lat7 BIGINT NOT NULL DEFAULT 0, lat8 BIGINT NOT NULL DEFAULT 0,
    lat9 BIGINT NOT NULL DEFAULT 0, lat10 BIGINT NOT NULL DEFAULT 0, lat11 BIGINT NOT NULL DEFAULT 0,
    lat12 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, channel, provider, event, code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The same, per hour.
CREATE TABLE IF NOT EXISTS herald_stats_hourly (
    bucket DATETIME(6) NOT NULL,
    channel VARCHAR(32) NOT NULL,
    provider VARCHAR(64) NOT NULL,
    event VARCHAR(128) NOT NULL,
    code VARCHAR(128) NOT NULL DEFAULT '',
    count BIGINT NOT NULL DEFAULT 0,
    segments BIGINT NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    lat0 BIGINT NOT NULL DEFAULT 0, lat1 BIGINT NOT NULL DEFAULT 0, lat2 BIGINT NOT NULL DEFAULT 0,
    lat3 BIGINT NOT NULL DEFAULT 0, lat4 BIGINT NOT NULL DEFAULT 0, lat5 BIGINT NOT NULL DEFAULT 0,
    lat6 BIGINT NOT NULL DEFAULT 0, lat7 BIGINT NOT NULL DEFAULT 0, lat8 BIGINT NOT NULL DEFAULT 0,
    lat9 BIGINT NOT NULL DEFAULT 0, lat10 BIGINT NOT NULL DEFAULT 0, lat11 BIGINT NOT NULL DEFAULT 0,
    lat12 BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, channel, provider, event, code)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Dashboard sessions: only a hash of the cookie's token is stored.
CREATE TABLE IF NOT EXISTS herald_sessions (
    token_hash VARCHAR(128) NOT NULL PRIMARY KEY,
    csrf VARCHAR(128) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Alert rules added in the dashboard or the API, each rule's state, and
-- what happened.
CREATE TABLE IF NOT EXISTS herald_alert_rules (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    rule LONGTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS herald_alert_state (
    rule_id VARCHAR(255) NOT NULL PRIMARY KEY,
    firing BOOLEAN NOT NULL,
    since DATETIME(6),
    last_change DATETIME(6) NOT NULL,
    detail LONGTEXT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS herald_alert_events (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    rule_id VARCHAR(255) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    at DATETIME(6) NOT NULL,
    summary TEXT NOT NULL,
    detail LONGTEXT NOT NULL,
    deliveries LONGTEXT NOT NULL,
    KEY herald_alert_events_at (at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Who evaluates alerts: one worker at a time, by lease.
CREATE TABLE IF NOT EXISTS herald_leases (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    owner VARCHAR(255) NOT NULL,
    expires_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- A customer's messages, newest first.
-- A prefix: a POS's recipient may be TEXT, which MySQL indexes only so.
CREATE INDEX notification_messages_recipient ON notification_messages ({{recipient}}(191), id);
