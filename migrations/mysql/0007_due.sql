-- Claims and idle wake-ups read each channel's open rows in the order they
-- fall due, from one index. MySQL has no partial indexes: the due time is a
-- virtual column, NULL for rows that are not open (the index skips them in
-- one step), and the index leads with the channel.
ALTER TABLE notification_messages
    ADD COLUMN herald_due DATETIME(6) AS
        (CASE WHEN status IN ('pending', 'processing') THEN {{due_key}} ELSE NULL END) VIRTUAL;
CREATE INDEX notification_messages_due ON notification_messages ({{channel}}, herald_due, id);

-- Token buckets shared by every worker on this database.
CREATE TABLE IF NOT EXISTS herald_rate_buckets (
    bucket VARCHAR(512) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    tokens DOUBLE NOT NULL,
    refilled_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
