-- Idempotency keys for POST /api/messages(/batch): a retried request with the
-- same key returns the messages the first one created.
CREATE TABLE IF NOT EXISTS herald_idempotency_keys (
    `key` VARCHAR(255) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    request_hash VARCHAR(255) NOT NULL,
    message_ids LONGTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    KEY herald_idempotency_keys_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
