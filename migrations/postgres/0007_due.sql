-- Claims and idle wake-ups read each channel's open rows in the order they
-- fall due: messages due now first (in id order), then retries, scheduled
-- messages and expired leases by their time. A claim reads only rows that
-- are due, so a million messages scheduled for next week cost nothing
-- until then, and a rate-limited channel's claim never walks over another
-- channel's backlog. This replaces the id-ordered index of open rows.
CREATE INDEX IF NOT EXISTS notification_messages_due
    ON notification_messages ({{channel}}, ({{due_key}}), id) WHERE status IN ('pending', 'processing');
DROP INDEX IF EXISTS notification_messages_open;

-- Token buckets shared by every worker on this database: each holds one
-- sender's tokens (`SMS_RATE_LIMIT`…), so that N workers together send no
-- faster than the limit.
CREATE TABLE IF NOT EXISTS herald_rate_buckets (
    bucket TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    refilled_at TIMESTAMPTZ NOT NULL
);
