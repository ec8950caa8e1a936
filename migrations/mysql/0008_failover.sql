-- Circuit breakers, one row per provider, shared by every worker on this
-- database (see the PostgreSQL migration for the whole story).
CREATE TABLE IF NOT EXISTS herald_circuits (
    provider VARCHAR(64) NOT NULL PRIMARY KEY,
    state VARCHAR(16) NOT NULL,
    open_until DATETIME(6),
    opens INT NOT NULL DEFAULT 0,
    reason TEXT,
    probe_owner VARCHAR(255),
    probe_until DATETIME(6),
    generation BIGINT NOT NULL DEFAULT 0,
    changed_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- WhatsApp → SMS fallback: the SMS row points at the WhatsApp message it
-- replaces, and that message at its SMS; never twice (unique; MySQL's
-- unique indexes allow any number of NULLs).
ALTER TABLE notification_messages
    ADD COLUMN fallback_of BIGINT,
    ADD COLUMN fallback_message_id BIGINT;
CREATE UNIQUE INDEX notification_messages_fallback_of ON notification_messages (fallback_of);

-- Status webhooks to the POS: endpoints, the outbox (one small row per
-- event and endpoint, written with the change it tells of; the body is
-- written at the first attempt), and every delivery attempt.
CREATE TABLE IF NOT EXISTS herald_webhook_endpoints (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    url TEXT NOT NULL,
    description TEXT,
    events TEXT NOT NULL,
    secret VARCHAR(255) NOT NULL,
    previous_secret VARCHAR(255),
    previous_secret_until DATETIME(6),
    enabled INT NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    failing_since DATETIME(6),
    last_success_at DATETIME(6),
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS herald_webhook_outbox (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    event_id VARCHAR(64) NOT NULL,
    endpoint_id BIGINT NOT NULL,
    message_id BIGINT,
    type VARCHAR(64) NOT NULL,
    payload LONGTEXT,
    created_at DATETIME(6) NOT NULL,
    status VARCHAR(16) NOT NULL DEFAULT 'pending',
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(6) NOT NULL,
    lease_owner VARCHAR(255),
    delivered_at DATETIME(6),
    last_status INT,
    last_error TEXT,
    KEY herald_webhook_outbox_due (endpoint_id, status, next_attempt_at, id),
    KEY herald_webhook_outbox_order (message_id, endpoint_id, status, id),
    KEY herald_webhook_outbox_endpoint (endpoint_id, created_at),
    KEY herald_webhook_outbox_event (event_id),
    CONSTRAINT herald_webhook_outbox_endpoint_fk FOREIGN KEY (endpoint_id)
        REFERENCES herald_webhook_endpoints (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS herald_webhook_attempts (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    outbox_id BIGINT NOT NULL,
    endpoint_id BIGINT NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    attempt INT NOT NULL,
    at DATETIME(6) NOT NULL,
    status INT,
    latency_ms INT NOT NULL,
    error TEXT,
    KEY herald_webhook_attempts_endpoint (endpoint_id, id),
    KEY herald_webhook_attempts_outbox (outbox_id),
    CONSTRAINT herald_webhook_attempts_outbox_fk FOREIGN KEY (outbox_id)
        REFERENCES herald_webhook_outbox (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
