-- The queue table. A POS may already have created it: then `herald migrate`
-- adds the columns Herald needs before this runs (MySQL has no ADD COLUMN
-- IF NOT EXISTS), and this CREATE does nothing. Times are DATETIME(6) in
-- UTC (every connection of Herald's sets time_zone = '+00:00'; defaults use
-- UTC_TIMESTAMP, so a POS connection in another zone stores UTC too).
CREATE TABLE IF NOT EXISTS notification_messages (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    {{channel}} VARCHAR(32) NOT NULL,
    {{recipient}} VARCHAR(320) NOT NULL,
    {{subject}} TEXT,
    {{body}} LONGTEXT,
    {{html_body}} LONGTEXT,
    status VARCHAR(32) NOT NULL DEFAULT 'pending',
    attempts INT NOT NULL DEFAULT 0,
    {{error}} LONGTEXT CHECK (JSON_VALID({{error}})),
    provider VARCHAR(64),
    provider_message_id VARCHAR(255),
    send_at DATETIME(6),
    {{sent_at}} DATETIME(6),
    {{created_at}} DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    {{updated_at}} DATETIME(6) NOT NULL DEFAULT (UTC_TIMESTAMP(6)),
    metadata LONGTEXT CHECK (JSON_VALID(metadata)),
    next_attempt_at DATETIME(6),
    lease_owner VARCHAR(255),
    lease_expires_at DATETIME(6),
    retry_base INT NOT NULL DEFAULT 0
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

ALTER TABLE notification_messages ADD CONSTRAINT notification_messages_status_check
    CHECK (status IN ('pending', 'processing', 'sent', 'failed', 'cancelled'{{extra_statuses}}));

-- The guide's monitoring query: ORDER BY created_at DESC LIMIT 50.
CREATE INDEX notification_messages_created_at ON notification_messages ({{created_at}});

-- Every provider call, kept after the message row has moved on.
CREATE TABLE IF NOT EXISTS notification_attempts (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id BIGINT NOT NULL,
    attempt INT NOT NULL,
    started_at DATETIME(6) NOT NULL,
    finished_at DATETIME(6) NOT NULL,
    provider VARCHAR(64) NOT NULL,
    outcome VARCHAR(32) NOT NULL,
    error LONGTEXT,
    provider_message_id VARCHAR(255),
    worker VARCHAR(255),
    KEY notification_attempts_message (message_id, attempt)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- The guide's manual retry, `UPDATE … SET status = 'pending'` on a failed
-- (or cancelled) row: start a fresh round of retries, clear the schedule
-- and the lease. (MySQL has no NOTIFY: workers poll.)
CREATE TRIGGER herald_requeue BEFORE UPDATE ON notification_messages
FOR EACH ROW
BEGIN
    IF OLD.status IN ('failed', 'cancelled') AND NEW.status = 'pending' THEN
        SET NEW.retry_base = NEW.attempts;
        SET NEW.next_attempt_at = NULL;
        SET NEW.lease_owner = NULL;
        SET NEW.lease_expires_at = NULL;
        SET NEW.{{updated_at}} = UTC_TIMESTAMP(6);
    END IF;
END;
