-- Delivery receipts are kept apart from `status` (which stays "the provider
-- accepted it"): the latest delivery state, never moving backwards.
ALTER TABLE notification_messages
    ADD COLUMN delivery_status VARCHAR(32),
    ADD COLUMN delivery_rank INT,
    ADD COLUMN delivered_at DATETIME(6),
    ADD COLUMN delivery_error_code VARCHAR(64);

-- Receipts find their message by the provider's id.
CREATE INDEX notification_messages_provider_message_id ON notification_messages (provider_message_id);

-- Every receipt, as received.
CREATE TABLE IF NOT EXISTS notification_events (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id BIGINT NOT NULL,
    provider VARCHAR(64) NOT NULL,
    event VARCHAR(64) NOT NULL,
    delivery_status VARCHAR(32),
    occurred_at DATETIME(6),
    received_at DATETIME(6) NOT NULL,
    dedupe_key VARCHAR(512) COLLATE utf8mb4_bin NOT NULL,
    detail LONGTEXT NOT NULL,
    UNIQUE KEY notification_events_dedupe (dedupe_key),
    KEY notification_events_message (message_id, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Recipients who must not be messaged on a channel.
CREATE TABLE IF NOT EXISTS notification_suppressions (
    channel VARCHAR(32) NOT NULL,
    recipient VARCHAR(320) NOT NULL,
    reason TEXT NOT NULL,
    source VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    PRIMARY KEY (channel, recipient)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
